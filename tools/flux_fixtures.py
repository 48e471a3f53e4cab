"""FLUX.1 reference outputs of diffusers' own code at tiny random configs, for tests/model.

Writes under tests/fixtures/flux/:
  transformer-<name>/               FluxTransformer2DModel directories (save_pretrained layout)
  transformer-<name>-forward.safetensors
                                    inputs named like the forward arguments, every stage (the embedders, both
                                    streams after each double-stream block, after each single-stream block, the
                                    final modulated norm) and output.sample
  pipeline/                         a FluxPipeline directory without text encoders (components null, as
                                    diffusers allows), dev layout (guidance embeddings), a 4-level VAE with a
                                    shift_factor, FlowMatchEuler with dynamic shifting
  pipeline-run.safetensors          prompt_embeds, pooled_prompt_embeds, packed latents [B, N, 4C] as
                                    prepare_latents draws them, and the np images of an N-step run

Weights are seeded noise (see tools/diffusers_fixtures.py for why); the dev config stores BF16 and its
reference runs in float32 from the stored weights.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/flux_fixtures.py
"""

import argparse
import json
import os
import shutil

import numpy as np
import torch
import diffusers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from safetensors.torch import save_file

DIFFUSERS_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"


def randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("bias"):
                p.copy_(0.05 * noise)
            elif p.ndim == 1:
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(noise / np.sqrt(int(np.prod(p.shape[1:]))))
    return module


def header(extra):
    return {"script": "tools/flux_fixtures.py", "torch": torch.__version__,
            "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", **extra}


def contiguous(tensors):
    return {k: v.detach().to(torch.float32).clone().contiguous() for k, v in tensors.items()}


CONFIGS = {
    # dev: guidance embeddings, two heads of 16 split (4, 6, 6) over (t, h, w), BF16 weights.
    "dev": dict(config=dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=16,
                            num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=12,
                            guidance_embeds=True, axes_dims_rope=(4, 6, 6)),
                dtype=torch.bfloat16, grid=(2, 3), text=5, batch=2),
    # schnell: no guidance embedding, three heads of 8, odd text length, F32.
    "schnell": dict(config=dict(patch_size=1, in_channels=12, num_layers=1, num_single_layers=2,
                                attention_head_dim=8, num_attention_heads=3, joint_attention_dim=20,
                                pooled_projection_dim=8, guidance_embeds=False, axes_dims_rope=(2, 2, 4)),
                    dtype=torch.float32, grid=(3, 2), text=7, batch=1),
}


def image_ids(h, w):
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def forward(out, name, spec, seed):
    path = f"{out}/transformer-{name}"
    randomize(FluxTransformer2DModel(**spec["config"]), seed).to(spec["dtype"]).save_pretrained(path)
    model = FluxTransformer2DModel.from_pretrained(path, torch_dtype=torch.float32).eval()
    c = model.config
    g = torch.Generator().manual_seed(seed + 1)
    h, w = spec["grid"]
    batch, text = spec["batch"], spec["text"]
    inputs = {
        "hidden_states": torch.randn((batch, h * w, c.in_channels), generator=g),
        "encoder_hidden_states": torch.randn((batch, text, c.joint_attention_dim), generator=g),
        "pooled_projections": torch.randn((batch, c.pooled_projection_dim), generator=g),
        "timestep": torch.tensor([0.9, 0.25][:batch]),
        "img_ids": image_ids(h, w),
        "txt_ids": torch.zeros(text, 3),
    }
    if c.guidance_embeds:
        inputs["guidance"] = torch.tensor([3.5, 1.0][:batch])
    stages = {}
    model.x_embedder.register_forward_hook(lambda m, i, o: stages.__setitem__("x_embedder", o))
    model.context_embedder.register_forward_hook(lambda m, i, o: stages.__setitem__("context_embedder", o))
    model.time_text_embed.register_forward_hook(lambda m, i, o: stages.__setitem__("temb", o))
    def both_streams(name):
        # A hook that returns something replaces the module's output: this one only records.
        def hook(module, inputs, outputs):
            stages[f"{name}.text"], stages[f"{name}.image"] = outputs
        return hook

    for k, block in enumerate(model.transformer_blocks):
        block.register_forward_hook(both_streams(f"double.{k}"))
    for k, block in enumerate(model.single_transformer_blocks):
        block.register_forward_hook(both_streams(f"single.{k}"))
    model.proj_out.register_forward_pre_hook(lambda m, i: stages.__setitem__("norm_out", i[0]))
    with torch.no_grad():
        sample = model(**inputs).sample
    save_file(contiguous({**inputs, **stages, "sample": sample}), f"{path}-forward.safetensors",
              metadata=header({"component": f"transformer-{name}", "dtype": str(spec["dtype"])}))


def pipeline(out, seed):
    path = f"{out}/pipeline"
    transformer = randomize(FluxTransformer2DModel(**CONFIGS["dev"]["config"]), seed)
    vae = randomize(AutoencoderKL(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                  norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.3611,
                                  shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
                                  sample_size=32), seed + 1)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    FluxPipeline(scheduler=scheduler, vae=vae, transformer=transformer.to(torch.bfloat16), text_encoder=None,
                 tokenizer=None, text_encoder_2=None, tokenizer_2=None).save_pretrained(path)
    pipe = FluxPipeline.from_pretrained(path, torch_dtype=torch.float32, text_encoder=None, tokenizer=None,
                                        text_encoder_2=None, tokenizer_2=None)
    g = torch.Generator().manual_seed(seed + 2)
    height, width, steps, guidance = 32, 48, 4, 3.5
    prompt_embeds = torch.randn((1, 5, 24), generator=g)
    pooled = torch.randn((1, 12), generator=g)
    # prepare_latents: randn [B, C, 2 * (H // 16), 2 * (W // 16)], then packed 2x2 into [B, N, 4C].
    latents = torch.randn((1, 4, 2 * (height // 16), 2 * (width // 16)), generator=g)
    packed = FluxPipeline._pack_latents(latents, 1, 4, latents.shape[2], latents.shape[3])
    images = pipe(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, latents=packed, height=height,
                  width=width, num_inference_steps=steps, guidance_scale=guidance, output_type="np").images
    save_file(contiguous({"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled, "latents": packed,
                          "images": torch.from_numpy(images)}), f"{out}/pipeline-run.safetensors",
              metadata=header({"height": str(height), "width": str(width), "num_inference_steps": str(steps),
                               "guidance_scale": str(guidance)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/flux")
    args = p.parse_args()
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    print(json.dumps(header({})))
    for k, (name, spec) in enumerate(CONFIGS.items()):
        forward(args.out, name, spec, 500 + 10 * k)
    pipeline(args.out, 600)


if __name__ == "__main__":
    main()
