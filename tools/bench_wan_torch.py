"""diffusers' WanPipeline on PyTorch (CPU, float32): the reference side of deno task bench:wan.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/bench_wan_torch.py DIR --inputs IN.safetensors \
      --out OUT.safetensors --size 320x192 --frames 9 --guidance 5.0

Builds the directory's transformer and VAE from their configs and loads their (sharded) weights widened to
float32, as the engine computes (from_pretrained needs accelerate for Wan's fp32 modules, absent here). From
the bench's inputs (latents, prompt_embeds, negative_prompt_embeds) it times one guided UniPC step as
WanPipeline.__call__ runs it (conditional and unconditional forwards, the scheduler step) and the VAE decode of
the latents that step leaves, and writes both outputs to --out for the bench to compare. Prints one JSON line.
"""

import argparse
import glob
import json
import os
import time

import diffusers
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from safetensors.torch import load_file, save_file


def load(cls, path):
    model = cls.from_config(cls.load_config(path))
    state = {}
    for shard in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        state.update(load_file(shard))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.float().eval()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="320x192")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--guidance", type=float, default=5.0)
    args = p.parse_args()
    width, height = map(int, args.size.split("x"))
    inputs = load_file(args.inputs)
    pipe = WanPipeline(tokenizer=None, text_encoder=None,
                       transformer=load(WanTransformer3DModel, f"{args.model}/transformer"),
                       vae=load(AutoencoderKLWan, f"{args.model}/vae"),
                       scheduler=UniPCMultistepScheduler.from_pretrained(f"{args.model}/scheduler"))
    call = dict(prompt_embeds=inputs["prompt_embeds"], negative_prompt_embeds=inputs["negative_prompt_embeds"],
                height=height, width=width, num_frames=args.frames, num_inference_steps=1,
                guidance_scale=args.guidance, output_type="latent")
    with torch.no_grad():
        started = time.perf_counter()
        latents = pipe(latents=inputs["latents"].clone(), **call).frames
        stepped = time.perf_counter()
        c = pipe.vae.config
        mean = torch.tensor(c.latents_mean).view(1, c.z_dim, 1, 1, 1)
        std = 1.0 / torch.tensor(c.latents_std).view(1, c.z_dim, 1, 1, 1)
        video = pipe.vae.decode(latents / std + mean, return_dict=False)[0]
        decoded = time.perf_counter()
    save_file({"latents": latents.contiguous(), "video": video.contiguous()}, args.out)
    print(json.dumps({"script": "tools/bench_wan_torch.py", "torch": torch.__version__,
                      "diffusers": diffusers.__version__, "threads": torch.get_num_threads(),
                      "step_seconds": stepped - started, "decode_seconds": decoded - stepped}))


if __name__ == "__main__":
    main()
