"""cache-dit's FoCa calibrator (FoCaState) over a scripted run, for tests/pure/foca_reference_test.ts and
tests/cache/foca_test.ts.

One FoCaState per run, called as cache-dit's cache context calls it: mark_step_begin() every step, update(Y)
on computed steps, approximate() on cached ones. SCHEDULE ("C" computes, "." caches) holds a cached step right
after the first update and a second one before the next (the fallback to F_full, which does not advance the
window), gaps of 1, 2, 3, 4 and 6 cached steps (elapsed above 3 takes the horizon clamp) and two computed
steps in a row. Each Y is seeded normal noise, different at every computed step, so every weight and every
state tensor shows in the outputs. The state runs in float64 on float32-representable inputs; the outputs are
rounded to float32 once.

The script refuses to write a fixture that could not tell a wrong engine from a right one: every fallback must
equal F_full, every clamped step must differ from the unclamped Heun step, and every step after an approximate
must differ from a forecast whose window did not advance.

Writes tests/fixtures/cache/foca.safetensors:
  update.<step>        Y given to update() at each computed step, float32 [2, 3, 7]
  approximate.<step>   what approximate() returned at each cached step
Metadata: schedule, shape, script, torch version, cache-dit commit.

  PYTHONPATH=/work/cache-dit/src:/work/diffusers/src /work/ref-venv/bin/python tools/foca_fixtures.py
"""

import argparse
import json
import os

import torch
from safetensors.torch import save_file
from cache_dit.caching.cache_contexts.calibrators.foca import FoCaState

CACHE_DIT_COMMIT = "f86744a"
SCHEDULE = "C..C.C..C...C....C......CC.C"
SHAPE = (2, 3, 7)
SEED = 1300
MARGIN = 0.1


def versions():
    return {"script": "tools/foca_fixtures.py", "torch": torch.__version__, "cache_dit": CACHE_DIT_COMMIT}


def check(step, state, out, window_after_update):
    """The discrimination checks of the docstring, against the state just before approximate() and the
    window (F_k, F_km1) as the last update left it."""
    if state.F_km1 is None or state.F_full_prev is None:
        if not torch.equal(out, state.F_full):
            raise SystemExit(f"step {step}: the fallback is not F_full")
        return
    elapsed = state.current_step - state.last_full_step
    weight = elapsed / 2 if elapsed <= 3 else 4.5 / elapsed
    anchor_slope = state.F_full - state.F_full_prev
    if elapsed > 3:
        unclamped = state.F_full + elapsed / 2 * (anchor_slope + state.F_k - state.F_km1)
        if (unclamped - out).abs().max().item() < MARGIN:
            raise SystemExit(f"step {step}: the horizon clamp changes nothing")
    k, km1 = window_after_update
    if k is not state.F_k:
        unmoved = state.F_full + weight * (anchor_slope + k - km1)
        if (unmoved - out).abs().max().item() < MARGIN:
            raise SystemExit(f"step {step}: the advanced window changes nothing")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/cache")
    out = p.parse_args().out
    os.makedirs(out, exist_ok=True)
    print(json.dumps(versions()))
    generator = torch.Generator().manual_seed(SEED)
    state = FoCaState()
    tensors = {}
    window_after_update = (None, None)
    for step, kind in enumerate(SCHEDULE):
        state.mark_step_begin()
        if kind == "C":
            y = torch.randn(SHAPE, generator=generator, dtype=torch.float32)
            tensors[f"update.{step}"] = y
            state.update(y.to(torch.float64))
            window_after_update = (state.F_k, state.F_km1)
            continue
        before = FoCaState()
        before.__dict__.update(state.__dict__)
        predicted = state.approximate()
        check(step, before, predicted, window_after_update)
        tensors[f"approximate.{step}"] = predicted.to(torch.float32)
        print(f"step {step}: elapsed {state.current_step - state.last_full_step}, "
              f"|approximate| max {predicted.abs().max().item():.3f}")
    metadata = {**versions(), "schedule": SCHEDULE, "shape": json.dumps(list(SHAPE))}
    save_file({k: v.contiguous() for k, v in tensors.items()}, f"{out}/foca.safetensors", metadata=metadata)


if __name__ == "__main__":
    main()
