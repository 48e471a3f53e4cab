"""Reference runs of diffusers' UniPCMultistepScheduler as Wan2.1 ships it, and of FlowMatchEulerDiscreteScheduler
built from that config, for tests/pipeline/unipc_multistep_test.ts and tests/gpu/unipc_denoise_test.ts.

Writes tests/fixtures/wan/scheduler-unipc-<name>.safetensors (and scheduler-flow-euler-wan-shift5.safetensors):
  timesteps, sigmas        scheduler.timesteps (int64, stored as float32) and scheduler.sigmas after set_timesteps
  initial                  the starting sample
  model_output.<i>         what step i was given; with guidance, uncond + g * (cond - uncond) computed here, and
  cond.<i>, uncond.<i>     the two halves it was combined from
  offset.<i>               the stand-in model's own term: every half is model_slope * sample + offset (halves
                           stacked, cond first, when guided), so a GPU test can replay the run with a fake model;
                           the same for every step in the *-fixed-offset run
  prev_sample.<i>          step i's prev_sample
Metadata: the class, the full scheduler config (JSON), steps, model_slope and guidance_scale when guided.

The stand-in model's output depends on the sample (as a real one does) plus seeded noise fixed per step. The
Wan config is Wan2.1-T2V's scheduler_config.json; the variants change one option each (orders 1 and 3, bh1,
disable_corrector, the sigma_min final sigma, lower_order_final off at sigma_min). "bh1-zero" records diffusers' NaN last
step (B(h) = h is infinite at a zero final sigma), which the engine refuses.

Run (../shared/design/references.md has the set-up):
  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/unipc_fixtures.py
"""

import argparse
import json
import os

import diffusers
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from safetensors.torch import save_file

from diffusers_fixtures import DIFFUSERS_COMMIT
from wan_configs import UNIPC as WAN

SHAPE = (1, 4, 2, 3, 5)  # [B, C, F, H, W]: Wan's video latents, odd sizes
SLOPE = 0.5

# name: (config changes, steps, guidance scale or None, sample shape[, one offset for every step])
RUNS = {
    **{f"wan-shift{s}-{n}": ({"flow_shift": float(s)}, n, None, SHAPE) for s in (3, 5) for n in (4, 10, 50)},
    "order1": ({"solver_order": 1}, 10, None, SHAPE),
    "order3": ({"solver_order": 3}, 10, None, SHAPE),
    # Second order up to the last step, which a zero final sigma would make infinite.
    "no-lower-order-final": ({"lower_order_final": False, "final_sigmas_type": "sigma_min"}, 7, None, SHAPE),
    "bh1-sigma-min": ({"solver_type": "bh1", "final_sigmas_type": "sigma_min"}, 10, None, SHAPE),
    "bh1-zero": ({"solver_type": "bh1"}, 4, None, SHAPE),
    "sigma-min": ({"final_sigmas_type": "sigma_min"}, 10, None, SHAPE),
    "disable-corrector-0-2": ({"disable_corrector": [0, 2]}, 10, None, SHAPE),
    # Two samples: the guided halves are [cond b0, cond b1, uncond b0, uncond b1] on the GPU.
    "wan-shift5-guided": ({"flow_shift": 5.0}, 10, 5.0, (2, 4, 2, 3, 5)),
    # A fake model whose offset is a conditioning input replays this one on the GPU, through denoise().
    "wan-shift3-guided-fixed-offset": ({}, 8, 4.0, (2, 4, 2, 3, 5), True),
}


def header(extra):
    return {"script": "tools/unipc_fixtures.py", "torch": torch.__version__,
            "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", **extra}


def run(out, name, scheduler, steps, guidance, shape, seed, fixed_offset=False):
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(shape, generator=g)
    tensors = {"initial": sample, "timesteps": scheduler.timesteps.to(torch.float64).to(torch.float32),
               "sigmas": scheduler.sigmas.to(torch.float32)}
    halves = 2 if guidance is not None else 1
    offset = torch.randn((halves * shape[0], *shape[1:]), generator=g)
    for i, t in enumerate(scheduler.timesteps):
        if i > 0 and not fixed_offset:
            offset = torch.randn((halves * shape[0], *shape[1:]), generator=g)
        output = SLOPE * torch.cat([sample] * halves) + offset
        if guidance is not None:
            cond, uncond = output.chunk(2)
            model_output = uncond + guidance * (cond - uncond)
            tensors[f"cond.{i}"], tensors[f"uncond.{i}"] = cond, uncond
        else:
            model_output = output
        tensors[f"offset.{i}"] = offset
        tensors[f"model_output.{i}"] = model_output
        sample = scheduler.step(model_output, t, sample).prev_sample
        tensors[f"prev_sample.{i}"] = sample
    # Without diffusers' internal _use_default_values, a set printed in arbitrary order from run to run.
    config = {k: v for k, v in scheduler.config.items() if not k.startswith("_")}
    metadata = {"class": type(scheduler).__name__, "config": json.dumps(config),
                "steps": str(steps), "model_slope": str(SLOPE),
                **({"guidance_scale": str(guidance)} if guidance is not None else {})}
    tensors = {k: v.to(torch.float32).clone().contiguous() for k, v in tensors.items()}
    save_file(tensors, f"{out}/{name}.safetensors", metadata=header(metadata))
    last = tensors[f"prev_sample.{steps - 1}"]
    print(f"{name}: timesteps {scheduler.timesteps.tolist()[:6]}..., last |sample| max "
          f"{last.abs().max().item():.3f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/wan")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(json.dumps(header({})))
    for k, (name, (changes, steps, guidance, shape, *fixed)) in enumerate(RUNS.items()):
        scheduler = UniPCMultistepScheduler(**{**WAN, **changes})
        run(args.out, f"scheduler-unipc-{name}", scheduler, steps, guidance, shape, 500 + k, *fixed)
    # Wan's pipeline with FlowMatchEulerDiscreteScheduler(num_train_timesteps, shift=flow_shift) instead.
    euler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=WAN["num_train_timesteps"], shift=5.0)
    run(args.out, "scheduler-flow-euler-wan-shift5", euler, 10, None, SHAPE, 600)


if __name__ == "__main__":
    main()
