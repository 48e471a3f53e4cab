"""cache-dit's DMD calibrator (DMDState) over a scripted run, for tests/pure/dmd_reference_test.ts,
tests/pure/dmd_fit_test.ts and tests/cache/dmd_test.ts.

One DMDState per setting of SETTINGS, called as cache-dit's cache context calls it: mark_step_begin() every
step, update(Y) on computed steps, approximate() on cached ones. Each Y is a [2, 3, 7] tensor whose two batch
items follow their own sums of exponentials over the step index t (POLES): a slow decay, an alternating one
(a negative pole, so fractional horizons take the principal branch) and a damped oscillation, mixed into 21
values by seeded random matrices; item 0 is exact (its fifth singular value is f32 rounding, so rank
truncation acts), item 1 has 1% noise (every singular value is kept). SCHEDULE ("C"
computes, "." caches) spaces computed steps by 2, then 4, 3 and 1: uniform tails of 2 to 6 snapshots (the
Taylor fallback below 4), tails cut by a change of spacing, the history window sliding, fractional horizons
(1/3, 1/2, 2/3) and horizons above 1. Step 1 is cached (see below).

On fallback steps the engine follows cache-dit's TaylorSeerState (the rule DMDState's docstring says its
fallback is), not DMDState's own ladder, which divides by the last window the difference with the update two
before (and drops the derivative at the second update); the fixture holds both. With step 1 cached,
TaylorSeerState's `current_step > 1` condition never applies, so it is the engine's TaylorSeer rule.

The states run in float64 on float32-representable inputs; outputs are kept in float64 (JSON round-trips
them exactly). The script refuses to write a fixture that could not tell a wrong engine from a right one:
every DMD forecast must differ by more than MARGIN from the Taylor forecast, from the forecast that ignores
the spacing (integer steps as horizon), and from one fit on the whole batch at once; some fallback step must
tell the two ladders apart; rank truncation must act on item 0 and not on item 1.

Writes tests/fixtures/cache/dmd.json:
  shape, schedule, inputs {step: Y at computed steps, flat},
  runs [{settings (our calibrator_kwargs names), steps: [{step, path "dmd" | "taylor", tail, k,
  expected (DMDState's approximate), taylorseer (TaylorSeerState's, on fallback steps only)}]}],
  script, torch version, cache-dit commit. LAPACK's threads may change the last bit between runs.

  PYTHONPATH=/work/cache-dit/src:/work/diffusers/src /work/ref-venv/bin/python tools/dmd_fixtures.py
"""

import argparse
import json
import math
import os

import torch
from cache_dit.caching.cache_contexts.calibrators.dmd import DMDState, _dmd_eval, _dmd_fit
from cache_dit.caching.cache_contexts.calibrators.taylorseer import TaylorSeerState

CACHE_DIT_COMMIT = "f86744a"
SCHEDULE = "C.C.C.C.C.C...C...C..C..C..C..C...CCCC.."
SHAPE = (2, 3, 7)
SEED = 1400
MARGIN = 0.05
# Per batch item: the decay, the alternating pole, the oscillation's modulus and angle per step.
POLES = [(0.95, -0.8, 0.97, 0.6), (0.9, -0.7, 0.95, 0.9)]
# Our option names (calibrator_kwargs), cache-dit's DMDState arguments.
SETTINGS = [
    {"history": 6, "rank": 0, "ridge": 1e-8, "n_derivatives": 1},
    {"history": 5, "rank": 3, "ridge": 1e-3, "n_derivatives": 2},
]


def versions():
    return {"script": "tools/dmd_fixtures.py", "torch": torch.__version__, "cache_dit": CACHE_DIT_COMMIT}


def basis(t, decay, alternating, modulus, omega):
    return torch.tensor([
        decay**t, 0.8 * alternating**t, modulus**t * math.cos(omega * t), modulus**t * math.sin(omega * t)
    ], dtype=torch.float64)


def trajectories():
    """Y(t) for every step: [2, 3, 7] float32, item 1 noisy."""
    g = torch.Generator().manual_seed(SEED)
    d = SHAPE[1] * SHAPE[2]
    mix = torch.randn((SHAPE[0], d, 4), generator=g, dtype=torch.float64)
    ys = []
    for t in range(len(SCHEDULE)):
        y = torch.stack([mix[i] @ basis(t, *POLES[i]) for i in range(SHAPE[0])])
        y[1] += 0.01 * torch.randn(d, generator=g, dtype=torch.float64)
        ys.append(y.reshape(SHAPE).to(torch.float32))
    return ys


def tail_info(state):
    vels, spacing = state._uniform_tail()
    k = (state.current_step - state.snapshots[-1][0]) / spacing if spacing > 0 else None
    return len(vels), spacing, k, vels


def ranks(vels, rank):
    """The truncation rank cache-dit's fit takes for each batch item of the window."""
    out = []
    for i in range(SHAPE[0]):
        X = torch.stack([v[i].reshape(-1) for v in vels], dim=-1)[:, :-1]
        S = torch.linalg.svdvals(X)
        r = rank if rank > 0 else int((S > S[0] * 1e-4).sum().clamp(min=1).item())
        out.append(max(1, min(r, S.numel())))
    return out


def far(a, b):
    return (a - b).abs().max().item() > MARGIN


def run(setting, ys):
    state = DMDState(**setting, svd_precision="medium")
    taylor = TaylorSeerState(n_derivatives=setting["n_derivatives"])
    steps = []
    checks = {"ladders_differ": False, "truncated": False, "untruncated": False}
    for step, kind in enumerate(SCHEDULE):
        state.mark_step_begin()
        taylor.mark_step_begin()
        if kind == "C":
            y = ys[step].to(torch.float64)
            state.update(y)
            taylor.update(y)
            continue
        tail, spacing, k, vels = tail_info(state)
        predicted = state.approximate()
        fallback = taylor.approximate()
        entry = {"step": step, "tail": tail, "k": k, "expected": predicted.reshape(-1).tolist()}
        if tail >= 4:
            entry["path"] = "dmd"
            fit = _dmd_fit(vels, rank=setting["rank"], ridge=setting["ridge"])
            integer = _dmd_eval(fit, state.current_step - state.snapshots[-1][0])
            joint = _dmd_eval(_dmd_fit([v.reshape(1, -1) for v in vels], rank=setting["rank"],
                                       ridge=setting["ridge"]), k)
            if not far(predicted, fallback) or not far(predicted, joint.reshape(SHAPE)):
                raise SystemExit(f"step {step}: the DMD forecast is too close to Taylor's or a joint fit")
            if spacing > 1 and not far(predicted, integer):
                raise SystemExit(f"step {step}: the horizon in spacings changes nothing")
            r = ranks(vels, setting["rank"])
            if setting["rank"] == 0:
                checks["truncated"] |= r[0] < tail - 1
                checks["untruncated"] |= r[1] == tail - 1
            truth = ys[step].to(torch.float64)
            errors = [(p - truth).abs().max().item() for p in (predicted, fallback)]
            print(f"step {step}: DMD tail {tail} k {k:.3f} ranks {r}; |error| DMD {errors[0]:.4f}, "
                  f"Taylor {errors[1]:.4f}")
        else:
            entry["path"] = "taylor"
            entry["taylorseer"] = fallback.reshape(-1).tolist()
            checks["ladders_differ"] |= far(predicted, fallback)
            print(f"step {step}: fallback, tail {tail}; DMDState vs TaylorSeerState "
                  f"{(predicted - fallback).abs().max().item():.4f}")
        steps.append(entry)
    # Truncation is checked where the rank is chosen from the spectrum.
    required = checks if setting["rank"] == 0 else {"ladders_differ": checks["ladders_differ"]}
    failed = [name for name, ok in required.items() if not ok]
    if failed:
        raise SystemExit(f"setting {setting}: checks failed: {failed}")
    return {"settings": setting, "steps": steps}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/cache")
    out = p.parse_args().out
    os.makedirs(out, exist_ok=True)
    print(json.dumps(versions()))
    ys = trajectories()
    inputs = {str(s): ys[s].reshape(-1).tolist() for s, kind in enumerate(SCHEDULE) if kind == "C"}
    runs = [run(setting, ys) for setting in SETTINGS]
    fixture = {**versions(), "shape": list(SHAPE), "schedule": SCHEDULE, "inputs": inputs, "runs": runs}
    with open(f"{out}/dmd.json", "w") as f:
        json.dump(fixture, f)
    print(f"wrote {out}/dmd.json ({os.path.getsize(f'{out}/dmd.json')} bytes)")


if __name__ == "__main__":
    main()
