"""diffusers' and transformers' own outputs for the embedded FluxPipeline weights/mnist-flux, for
tests/model/mnist_flux_test.ts.

The directory is loaded by FluxPipeline.from_pretrained alone (no code of tools/train_mnist_flux.py), in
float32 from the stored F16 weights, which is what the engine reads and accumulates in f32. Writes under
tests/fixtures/mnist-flux/ (every file's metadata holds weights_sha256, the sha256 of each file of the
pipeline's component directories, which the test compares with weights/mnist-flux: re-export the weights,
then run this again):
  text.safetensors                 PROMPTS (metadata: as JSON, with each prompt's untruncated CLIP and T5 token
                                   counts): clip_input_ids [P, 77] and t5_input_ids [P, 32] as FluxPipeline's
                                   tokenizer calls give them, CLIP's last_hidden_state [P, 77, 128] and
                                   pooler_output [P, 128], T5's last_hidden_state [P, 32, 128]; they are
                                   encode_prompt's pooled_prompt_embeds and prompt_embeds (asserted here)
  transformer-forward.safetensors  one FluxTransformer2DModel forward on seeded packed latents [1, 16, 16] at
                                   timestep 0.6, conditioned on the first prompt, with FluxPipeline's img_ids and
                                   txt_ids: the inputs by their argument names, every stage and sample
  vae-decode.safetensors           seeded latents [1, 4, 8, 8], z = latents / scaling_factor + shift_factor (as
                                   FluxPipeline maps them) and vae.decode(z).sample [1, 3, 32, 32]
  pipeline-run-<run>.safetensors   FluxPipeline(prompt, height 32, width 32, 3 steps, max_sequence_length 32,
                                   output_type "np") from seeded packed latents: latents and images [1, 32, 32, 3];
                                   "true-cfg" adds negative_prompt "" at true_cfg_scale 3

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/mnist_flux_fixtures.py
"""

import argparse
import hashlib
import json
import os
import shutil

import torch
import diffusers
import transformers
from diffusers import FluxPipeline
from safetensors.torch import save_file

from diffusers_fixtures import DIFFUSERS_COMMIT, contiguous
from flux_fixtures import forward_stages, packed_latents

WEIGHTS = "weights/mnist-flux"
SCRIPT = "tools/mnist_flux_fixtures.py"
CLIP_TOKENS = 77
# The length T5 was trained at: tokenizer_2's model_max_length, and the max_sequence_length to pass.
T5_TOKENS = 32
HEIGHT = WIDTH = 32
STEPS = 3

# A training phrasing (the pipeline runs' prompt), a held-out one, the empty prompt (true CFG's negative), and
# held-out phrasings past T5's 32 tokens (truncated) though within CLIP's 77.
PROMPTS = [
    "a handwritten seven",
    "a neat handwritten numeral three",
    "",
    "someone drew a 4 by hand, a scanned picture of the digit 4, please write the number 4, an MNIST-style "
    "handwritten 4",
]
RUNS = {
    "plain": dict(prompt="a handwritten seven"),
    "true-cfg": dict(prompt="a handwritten seven", negative_prompt="", true_cfg_scale=3.0),
}


def weights_sha256(root):
    """{path under root: sha256} of every file of the component directories model_index.json lists."""
    with open(f"{root}/model_index.json", encoding="utf-8") as f:
        index = json.load(f)
    components = sorted(k for k, v in index.items() if isinstance(v, list) and v[0] is not None)
    sums = {}
    for component in components:
        for folder, _, files in sorted(os.walk(f"{root}/{component}")):
            for name in sorted(files):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    sums[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return sums


def header(sums, extra):
    return {"script": SCRIPT, "weights": WEIGHTS, "weights_sha256": json.dumps(sums, sort_keys=True),
            "torch": torch.__version__, "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})",
            "transformers": transformers.__version__, **extra}


def text(pipe, out, meta):
    ids = {}
    for key, tokenizer, length in (("clip", pipe.tokenizer, CLIP_TOKENS), ("t5", pipe.tokenizer_2, T5_TOKENS)):
        ids[key] = tokenizer(PROMPTS, padding="max_length", max_length=length, truncation=True,
                             return_tensors="pt").input_ids
    untruncated = [(len(pipe.tokenizer(p).input_ids), len(pipe.tokenizer_2(p).input_ids)) for p in PROMPTS]
    # Only the last prompt is truncated, and only by T5.
    assert all(c <= CLIP_TOKENS for c, _ in untruncated), untruncated
    assert untruncated[-1][1] > T5_TOKENS and all(t <= T5_TOKENS for _, t in untruncated[:-1]), untruncated
    with torch.no_grad():
        clip = pipe.text_encoder(ids["clip"])
        t5 = pipe.text_encoder_2(ids["t5"]).last_hidden_state
        prompt_embeds, pooled, text_ids = pipe.encode_prompt(prompt=PROMPTS, prompt_2=None,
                                                             max_sequence_length=T5_TOKENS)
    # What the engine is compared with is what FluxPipeline conditions on.
    assert torch.equal(prompt_embeds, t5) and torch.equal(pooled, clip.pooler_output)
    save_file(contiguous({"clip_input_ids": ids["clip"], "t5_input_ids": ids["t5"],
                          "clip_last_hidden_state": clip.last_hidden_state, "clip_pooler_output": clip.pooler_output,
                          "t5_last_hidden_state": t5}), f"{out}/text.safetensors",
              metadata=meta({"prompts": json.dumps(PROMPTS), "untruncated_tokens": json.dumps(untruncated),
                             "max_sequence_length": str(T5_TOKENS)}))
    return prompt_embeds[:1], pooled[:1], text_ids


def transformer_forward(pipe, out, meta, prompt_embeds, pooled, text_ids, seed):
    g = torch.Generator().manual_seed(seed)
    scale = pipe.vae_scale_factor
    hidden = packed_latents(1, HEIGHT, WIDTH, g, channels=pipe.vae.config.latent_channels, vae_scale=scale)
    side = HEIGHT // (2 * scale)
    inputs = {"hidden_states": hidden, "timestep": torch.tensor([0.6]), "encoder_hidden_states": prompt_embeds,
              "pooled_projections": pooled, "txt_ids": text_ids,
              "img_ids": FluxPipeline._prepare_latent_image_ids(1, side, side, "cpu", torch.float32)}
    save_file(contiguous({**inputs, **forward_stages(pipe.transformer, inputs)}),
              f"{out}/transformer-forward.safetensors", metadata=meta({"prompt": PROMPTS[0]}))


def vae_decode(pipe, out, meta, seed):
    g = torch.Generator().manual_seed(seed)
    c = pipe.vae.config
    side = HEIGHT // pipe.vae_scale_factor
    latents = torch.randn((1, c.latent_channels, side, side), generator=g)
    z = latents / c.scaling_factor + c.shift_factor
    with torch.no_grad():
        sample = pipe.vae.decode(z, return_dict=False)[0]
    save_file(contiguous({"latents": latents, "z": z, "sample": sample}), f"{out}/vae-decode.safetensors",
              metadata=meta({}))


def pipeline_runs(pipe, out, meta, seed):
    for k, (name, spec) in enumerate(RUNS.items()):
        g = torch.Generator().manual_seed(seed + k)
        packed = packed_latents(1, HEIGHT, WIDTH, g, channels=pipe.vae.config.latent_channels,
                                vae_scale=pipe.vae_scale_factor)
        images = pipe(**spec, latents=packed, height=HEIGHT, width=WIDTH, num_inference_steps=STEPS,
                      max_sequence_length=T5_TOKENS, output_type="np").images
        extra = {"prompt": spec["prompt"], "height": str(HEIGHT), "width": str(WIDTH),
                 "num_inference_steps": str(STEPS), "guidance_scale": "0", "max_sequence_length": str(T5_TOKENS)}
        if "negative_prompt" in spec:
            extra.update(negative_prompt=spec["negative_prompt"], true_cfg_scale=str(spec["true_cfg_scale"]))
        save_file(contiguous({"latents": packed, "images": torch.from_numpy(images)}),
                  f"{out}/pipeline-run-{name}.safetensors", metadata=meta(extra))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/mnist-flux")
    args = p.parse_args()
    torch.set_num_threads(2)
    sums = weights_sha256(WEIGHTS)
    pipe = FluxPipeline.from_pretrained(WEIGHTS, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.tokenizer_max_length == CLIP_TOKENS and pipe.tokenizer_2.model_max_length == T5_TOKENS
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    meta = lambda extra: header(sums, extra)
    print(json.dumps(meta({}), indent=1))
    prompt_embeds, pooled, text_ids = text(pipe, args.out, meta)
    transformer_forward(pipe, args.out, meta, prompt_embeds, pooled, text_ids, 800)
    vae_decode(pipe, args.out, meta, 810)
    pipeline_runs(pipe, args.out, meta, 820)


if __name__ == "__main__":
    main()
