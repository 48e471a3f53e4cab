"""Reference outputs of diffusers' own code at tiny random configs, for tests/model and tests/pipeline.

Writes under tests/fixtures/diffusers/:
  dit-<name>/transformer/         DiTTransformer2DModel directories (save_pretrained layout)
  dit-<name>-forward.safetensors  inputs, every stage (after pos_embed, each block, the final modulated norm)
                                  and output.sample of one forward
  vae-<name>/                     AutoencoderKL directories
  vae-<name>-decode.safetensors   z, every stage of the decoder and output.sample
  scheduler-<name>.safetensors    timesteps and the samples of N steps from given model outputs; the
                                  scheduler config and the step count are in the metadata
  dit-pipeline/                   a whole DiTPipeline directory (model_index.json with id2label)
  dit-pipeline-run-<g>.safetensors fixed latents (as randn_tensor draws them), the class labels and the
                                  np output (float32 [B, H, W, 3] in [0, 1]) of an N-step run at guidance g

Weights are seeded noise everywhere (N(0, 1/fan_in) weights, small biases, 1 + noise norm scales), since
diffusers zero-initialises the adaLN and output projections and zeros would hide wrong chunk orders. Some
components are stored in BF16 or F16; their references are computed in float32 from the stored (rounded)
weights, which is what an engine that reads the stored dtype and accumulates in f32 must reproduce.

Run (../shared/design/references.md has the set-up):
  python3 -m venv /work/ref-venv && /work/ref-venv/bin/pip install torch==2.13.0+cpu numpy transformers \\
      safetensors tokenizers sentencepiece huggingface_hub pillow regex requests filelock importlib_metadata scipy
  git -C <diffusers mirror> archive 58eb52c0803ea9af3abec60841c2a093bdf1f951 src | tar -x -C /work/diffusers
  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/diffusers_fixtures.py
"""

import argparse
import json
import os
import shutil

import numpy as np
import torch
import diffusers
from diffusers import (AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel,
                       DPMSolverMultistepScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler)
from safetensors.torch import save_file

DIFFUSERS_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"


def randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("bias"):
                p.copy_(0.05 * noise)
            elif p.ndim == 1:  # norm scales
                p.copy_(1 + 0.1 * noise)
            elif "embedding_table" in name:
                p.copy_(noise)
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(noise / np.sqrt(fan_in))
    return module


def stored(model_cls, model, path, dtype):
    """Saves in `dtype`, reloads in float32: the reference then runs on exactly the stored weights."""
    model.to(dtype).save_pretrained(path)
    return model_cls.from_pretrained(path, torch_dtype=torch.float32).eval()


def contiguous(tensors):
    return {k: v.detach().to(torch.float32).clone().contiguous() for k, v in tensors.items()}


def header(script_args):
    return {"script": "tools/diffusers_fixtures.py", "torch": torch.__version__,
            "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", **script_args}


DIT_CONFIGS = {
    # Learned sigma (out = 2 * in), 1000 classes like DiT-XL/2, two heads, weights in BF16.
    "a": dict(config=dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                          num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=1000),
              dtype=torch.bfloat16, batch=3),
    # Odd channels, three heads, patch 3, affine norm3 with its own eps, no learned sigma, weights in F16.
    "b": dict(config=dict(num_attention_heads=3, attention_head_dim=4, in_channels=3, num_layers=3,
                          sample_size=12, patch_size=3, num_embeds_ada_norm=7, norm_elementwise_affine=True,
                          norm_eps=1e-6),
              dtype=torch.float16, batch=2),
}


def dit_forward(out, name, spec, seed):
    model = randomize(DiTTransformer2DModel(**spec["config"]), seed)
    model = stored(DiTTransformer2DModel, model, f"{out}/dit-{name}/transformer", spec["dtype"])
    c = model.config
    g = torch.Generator().manual_seed(seed + 1)
    batch = spec["batch"]
    hidden = torch.randn((batch, c.in_channels, c.sample_size, c.sample_size), generator=g)
    timestep = torch.tensor([999, 500, 3][:batch], dtype=torch.int64)
    labels = torch.tensor([c.num_embeds_ada_norm, 1, 5][:batch], dtype=torch.int64)  # the CFG row too
    stages = {}
    model.pos_embed.register_forward_hook(lambda m, i, o: stages.__setitem__("pos_embed", o))
    for k, block in enumerate(model.transformer_blocks):
        block.register_forward_hook(lambda m, i, o, k=k: stages.__setitem__(f"block.{k}", o))
    model.proj_out_2.register_forward_pre_hook(lambda m, i: stages.__setitem__("norm_out", i[0]))
    with torch.no_grad():
        sample = model(hidden, timestep=timestep, class_labels=labels).sample
    tensors = {"hidden_states": hidden, "timestep": timestep.to(torch.float32),
               "class_labels": labels.to(torch.float32), "sample": sample, **stages}
    save_file(contiguous(tensors), f"{out}/dit-{name}-forward.safetensors",
              metadata=header({"component": f"dit-{name}/transformer", "dtype": str(spec["dtype"])}))


VAE_CONFIGS = {
    # SD-like: post_quant_conv, 4 latent channels, two levels, 4 groups; non-square 5x7 latents, F32.
    "a": dict(config=dict(latent_channels=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                          down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                          scaling_factor=0.18215, sample_size=16),
              dtype=torch.float32, z=(2, 4, 5, 7), tiled_z=(1, 4, 12, 21)),
    # FLUX-like: no post_quant_conv, shift_factor, odd latent channels, three levels, 3 groups, BF16.
    "b": dict(config=dict(latent_channels=3, block_out_channels=(6, 12, 12), layers_per_block=2,
                          norm_num_groups=3, down_block_types=("DownEncoderBlock2D",) * 3,
                          up_block_types=("UpDecoderBlock2D",) * 3, scaling_factor=0.3611, shift_factor=0.1159,
                          use_quant_conv=False, use_post_quant_conv=False, sample_size=32),
              dtype=torch.bfloat16, z=(1, 3, 4, 6)),
}


def vae_decode(out, name, spec, seed):
    model = randomize(AutoencoderKL(**spec["config"]), seed)
    model = stored(AutoencoderKL, model, f"{out}/vae-{name}", spec["dtype"])
    z = torch.randn(spec["z"], generator=torch.Generator().manual_seed(seed + 1))
    stages = {}
    dec = model.decoder
    if model.post_quant_conv is not None:
        model.post_quant_conv.register_forward_hook(lambda m, i, o: stages.__setitem__("post_quant_conv", o))
    dec.conv_in.register_forward_hook(lambda m, i, o: stages.__setitem__("conv_in", o))
    dec.mid_block.register_forward_hook(lambda m, i, o: stages.__setitem__("mid_block", o))
    for k, block in enumerate(dec.up_blocks):
        block.register_forward_hook(lambda m, i, o, k=k: stages.__setitem__(f"up_blocks.{k}", o))
    with torch.no_grad():
        sample = model.decode(z).sample
    save_file(contiguous({"z": z, "sample": sample, **stages}), f"{out}/vae-{name}-decode.safetensors",
              metadata=header({"component": f"vae-{name}", "dtype": str(spec["dtype"])}))
    if "tiled_z" in spec:
        # diffusers' tiled decode (enable_tiling): overlapping latent tiles of sample_size / scale, blended.
        model.enable_tiling()
        tiled_z = torch.randn(spec["tiled_z"], generator=torch.Generator().manual_seed(seed + 2))
        with torch.no_grad():
            tiled = model.decode(tiled_z).sample
        save_file(contiguous({"z": tiled_z, "sample": tiled}), f"{out}/vae-{name}-tiled-decode.safetensors",
                  metadata=header({"component": f"vae-{name}", "tile_latent_min_size": str(model.tile_latent_min_size),
                                   "tile_sample_min_size": str(model.tile_sample_min_size)}))


SCHEDULERS = {
    "ddim-epsilon": (DDIMScheduler, dict(beta_schedule="linear", clip_sample=False), 10),
    "ddim-v-clip": (DDIMScheduler, dict(beta_schedule="scaled_linear", prediction_type="v_prediction",
                                        clip_sample=True, clip_sample_range=1.5, set_alpha_to_one=False,
                                        steps_offset=1, timestep_spacing="trailing"), 7),
    "ddim-sample-linspace": (DDIMScheduler, dict(prediction_type="sample", timestep_spacing="linspace",
                                                 clip_sample=False), 6),
    "dpm-2m-epsilon": (DPMSolverMultistepScheduler, dict(), 12),
    "dpm-2m-v-karras": (DPMSolverMultistepScheduler, dict(prediction_type="v_prediction", use_karras_sigmas=True,
                                                          beta_schedule="scaled_linear"), 9),
    "dpm-1-noeuler": (DPMSolverMultistepScheduler, dict(solver_order=1, lower_order_final=False), 5),
    "euler-epsilon": (EulerDiscreteScheduler, dict(beta_schedule="scaled_linear", steps_offset=1), 8),
    "euler-v-leading": (EulerDiscreteScheduler, dict(prediction_type="v_prediction", timestep_spacing="leading"),
                        6),
    "flow-euler-shift3": (FlowMatchEulerDiscreteScheduler, dict(shift=3.0), 9),
    "flow-euler-dynamic": (FlowMatchEulerDiscreteScheduler, dict(use_dynamic_shifting=True), 6),
}


def scheduler_run(out, name, cls, config, steps, seed):
    scheduler = cls(**config)
    kwargs = {"mu": 0.8} if config.get("use_dynamic_shifting") else {}
    scheduler.set_timesteps(steps, **kwargs)
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn((2, 3, 4, 5), generator=g)
    tensors = {"initial": sample, "timesteps": scheduler.timesteps.to(torch.float64).to(torch.float32)}
    if hasattr(scheduler, "sigmas"):
        tensors["sigmas"] = scheduler.sigmas.to(torch.float32)
    sample = sample * getattr(scheduler, "init_noise_sigma", 1.0)
    tensors["scaled_initial"] = sample
    for i, t in enumerate(scheduler.timesteps):
        # Flow-match schedulers take the sample as it is (their pipelines call no scale_model_input).
        scale = getattr(scheduler, "scale_model_input", None)
        model_input = scale(sample, t) if scale else sample
        # A stand-in model: its output depends on the input, as a real one does.
        model_output = 0.7 * model_input + 0.3 * torch.randn(sample.shape, generator=g)
        tensors[f"model_input.{i}"] = model_input
        tensors[f"model_output.{i}"] = model_output
        sample = scheduler.step(model_output, t, sample).prev_sample
        tensors[f"sample.{i}"] = sample
    full = dict(scheduler.config)
    save_file(contiguous(tensors), f"{out}/scheduler-{name}.safetensors",
              metadata=header({"class": cls.__name__, "config": json.dumps(full), "steps": str(steps),
                               **({"mu": "0.8"} if kwargs else {})}))


def dit_pipeline(out, seed):
    path = f"{out}/dit-pipeline"
    transformer = randomize(DiTTransformer2DModel(**DIT_CONFIGS["a"]["config"]), seed)
    vae = randomize(AutoencoderKL(**VAE_CONFIGS["a"]["config"]), seed + 1)
    scheduler = DDIMScheduler(beta_schedule="linear", clip_sample=False)
    DiTPipeline(transformer=transformer.to(torch.bfloat16), vae=vae, scheduler=scheduler).save_pretrained(path)
    index = json.load(open(f"{path}/model_index.json"))
    index["id2label"] = {str(i): f"class {i}, thing {i}" for i in range(1000)}
    index["id2label"]["207"] = "golden retriever"
    index["id2label"]["360"] = "otter"
    json.dump(index, open(f"{path}/model_index.json", "w"), indent=2)
    pipe = DiTPipeline.from_pretrained(path, torch_dtype=torch.float32)
    assert pipe.get_label_ids(["otter"]) == [360]
    latent = pipe.transformer.config
    for guidance, steps in ((4.0, 5), (1.0, 3)):
        labels = [207, 360]
        g = torch.Generator().manual_seed(seed + 7)
        latents = torch.randn((len(labels), latent.in_channels, latent.sample_size, latent.sample_size), generator=g)
        images = pipe(class_labels=labels, guidance_scale=guidance, num_inference_steps=steps,
                      generator=torch.Generator().manual_seed(seed + 7), output_type="np").images
        tensors = {"latents": latents, "class_labels": torch.tensor(labels, dtype=torch.float32),
                   "images": torch.from_numpy(images)}
        save_file(contiguous(tensors), f"{out}/dit-pipeline-run-{guidance:g}.safetensors",
                  metadata=header({"pipeline": "dit-pipeline", "guidance_scale": str(guidance),
                                   "num_inference_steps": str(steps)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/diffusers")
    args = p.parse_args()
    torch.manual_seed(0)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    print(json.dumps(header({})))
    for k, (name, spec) in enumerate(DIT_CONFIGS.items()):
        dit_forward(args.out, name, spec, 100 + 10 * k)
    for k, (name, spec) in enumerate(VAE_CONFIGS.items()):
        vae_decode(args.out, name, spec, 200 + 10 * k)
    for k, (name, (cls, config, steps)) in enumerate(SCHEDULERS.items()):
        scheduler_run(args.out, name, cls, config, steps, 300 + k)
    dit_pipeline(args.out, 400)


if __name__ == "__main__":
    main()
