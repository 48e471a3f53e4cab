"""diffusers' FluxPipeline on PyTorch (CPU, float32) on a mnist-flux directory: the reference bench:model runs.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/bench_mnist_flux_torch.py weights/mnist-flux \
      --prompts '["a neat handwritten numeral 0", ...]' [--steps 20] [--batch 8] [--true-cfg 1]

Loads the directory with FluxPipeline.from_pretrained (the F16 weights widened to float32, as the engine
computes), then draws one image per prompt at the directory's 32x32, max_sequence_length from its prompts.json
(32: the length its T5 was trained at), in batches of --batch, with true CFG against the empty prompt when
--true-cfg is above 1. One batch first as a warm-up, untimed. Prints one JSON line: seconds per image and its
split. The three phases are timed as separate calls to what FluxPipeline.__call__ runs (encode_prompt, then
__call__ on those embeddings with output_type="latent", then its unpack, latents / scaling_factor +
shift_factor, vae.decode and postprocess), so the split adds nothing to the loop. diffusers keeps no prompt
cache: every prompt, and under true CFG every batch's empty negatives, is encoded.
"""

import argparse
import json
import time

import diffusers
import torch
from diffusers import FluxPipeline


def phases(pipe, prompts, args, seed):
    """Seconds of (encode, denoise, decode) for one batch."""
    started = time.perf_counter()
    embeds, pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, max_sequence_length=args.tokens)
    negative = {}
    if args.true_cfg > 1:
        neg, neg_pooled, _ = pipe.encode_prompt(prompt=[""] * len(prompts), prompt_2=None,
                                                max_sequence_length=args.tokens)
        negative = dict(negative_prompt_embeds=neg, negative_pooled_prompt_embeds=neg_pooled)
    encoded = time.perf_counter()
    latents = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, **negative, true_cfg_scale=args.true_cfg,
                   height=args.size, width=args.size, num_inference_steps=args.steps,
                   max_sequence_length=args.tokens, output_type="latent",
                   generator=torch.Generator().manual_seed(seed)).images
    denoised = time.perf_counter()
    latents = pipe._unpack_latents(latents, args.size, args.size, pipe.vae_scale_factor)
    latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
    pipe.image_processor.postprocess(pipe.vae.decode(latents, return_dict=False)[0], output_type="np")
    decoded = time.perf_counter()
    return encoded - started, denoised - encoded, decoded - denoised


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--prompts", required=True, help="JSON list: one image each")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--true-cfg", type=float, default=1.0)
    p.add_argument("--size", type=int, default=32)
    args = p.parse_args()
    prompts = json.loads(args.prompts)
    with open(f"{args.model}/prompts.json") as f:
        args.tokens = json.load(f)["max_sequence_length"]
    pipe = FluxPipeline.from_pretrained(args.model, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    batches = [prompts[i:i + args.batch] for i in range(0, len(prompts), args.batch)]
    with torch.no_grad():
        phases(pipe, batches[0], args, 0)
        totals = [0.0, 0.0, 0.0]
        for i, batch in enumerate(batches):
            totals = [t + s for t, s in zip(totals, phases(pipe, batch, args, 1000 + i))]
    n = len(prompts)
    encode, denoise, decode = totals
    print(json.dumps({
        "images": n, "steps": args.steps, "batch": args.batch, "true_cfg": args.true_cfg,
        "max_sequence_length": args.tokens, "seconds_per_image": sum(totals) / n,
        "encode_seconds_per_image": encode / n, "denoise_seconds_per_image": denoise / n,
        "decode_seconds_per_image": decode / n, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "diffusers": diffusers.__version__,
    }))


if __name__ == "__main__":
    main()
