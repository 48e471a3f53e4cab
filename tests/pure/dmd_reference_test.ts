// DmdReference: exact cases worked out by hand, then against cache-dit's DMDState over the scripted runs of
// tools/dmd_fixtures.py (two settings: fallbacks, tails cut by a change of spacing, a sliding window,
// fractional horizons, rank truncation on one batch item and not the other).
import assert from "node:assert/strict";
import { DmdReference, type DmdSettings, truncationRank, uniformTail } from "../../src/ref/dmd.ts";
import { assertClose } from "../support/assert_close.ts";
import { readDmdFixture } from "../support/dmd_fixture.ts";

const DEFAULTS: DmdSettings = { history: 6, rank: 0, ridge: 1e-8, nDerivatives: 1 };

Deno.test("DMD reference: the uniform tail and the truncation rank", () => {
  assert.deepEqual(uniformTail([]), { length: 0, spacing: 0 });
  assert.deepEqual(uniformTail([3]), { length: 0, spacing: 0 });
  assert.deepEqual(uniformTail([0, 2, 4, 7, 10]), { length: 3, spacing: 3 });
  assert.deepEqual(uniformTail([1, 2, 3, 4]), { length: 4, spacing: 1 });
  assert.equal(truncationRank([1, 1e-3, 1e-4, 1e-5], 0, 4), 2, "above 1e-4 of the leading one");
  assert.equal(truncationRank([0, 0], 0, 2), 1, "at least one");
  assert.equal(truncationRank([1, 0.5, 0.2], 5, 3), 3, "an explicit rank is clamped to what exists");
});

// Exact exponentials are what DMD fits exactly: a real pole and a damped rotation (a complex pair); without
// the ridge, which biases each mode by ridge / singular value (~1e-9 here).
Deno.test("DMD reference: exact on exponentials, at fractional horizons, per batch item", () => {
  const truth = (t: number) => {
    const [r, w] = [0.9 ** t, 0.5 * t];
    // Item 0: 0.8^t along one direction; item 1: a damped rotation in a plane of 3 values.
    return [
      2 * 0.8 ** t,
      -(0.8 ** t),
      0.5 * 0.8 ** t,
      r * Math.cos(w),
      r * Math.sin(w),
      r * (Math.cos(w) + Math.sin(w)),
    ];
  };
  const dmd = new DmdReference(2, { ...DEFAULTS, ridge: 0 });
  for (const step of [0, 2, 4, 6, 8]) dmd.update(step, truth(step));
  for (const step of [9, 10, 11]) {
    assertClose(dmd.approximate(step), truth(step), { atol: 1e-10, rtol: 0 }, `${step}`);
  }
});

// Below 4 snapshots, TaylorSeer: Y = 1, 3, 7 at steps 0, 2, 4 gives d1 = (7 - 3) / 2, so 7 + 2 at step 5.
// A forecast that overflows f32 reuses the newest snapshot: 1e10 per step predicts 1e40 one step on.
Deno.test("DMD reference: the Taylor fallback and the newest snapshot on overflow", () => {
  const dmd = new DmdReference(1, DEFAULTS);
  assert.throws(() => dmd.approximate(0), /approximate before any update/);
  [1, 3, 7].forEach((y, i) => dmd.update(2 * i, [y]));
  assert.deepEqual([...dmd.approximate(5)], [9]);
  const growing = new DmdReference(1, DEFAULTS);
  [1, 1e10, 1e20, 1e30].forEach((y, step) => growing.update(step, [y, 2 * y]));
  assert.deepEqual([...growing.approximate(4)], [1e30, 2e30]);
});

// cache-dit runs in f64 with LAPACK (gesdd, geev, gelsy), the reference with ml-matrix's Golub-Kahan SVD and
// Hessenberg QR: the same fit to rounding (they agree within 1e-13 here; the fit's conditioning, with 1%
// noise modes on item 1 and eigenvalue powers, could amplify it). A wrong horizon, rank, batch split or
// fallback is off by > 0.05 (tools/dmd_fixtures.py checks that).
const TOL = { atol: 1e-12, rtol: 1e-12 };

Deno.test("DMD reference equals cache-dit's DMDState (on fallbacks TaylorSeerState)", async () => {
  const { shape, runs } = await readDmdFixture();
  for (const { settings, steps } of runs) {
    const dmd = new DmdReference(shape[0], settings);
    let [forecasts, fallbacks, deviations] = [0, 0, 0];
    for (const s of steps) {
      if (s.computed) {
        dmd.update(s.step, s.y);
        continue;
      }
      const got = dmd.approximate(s.step);
      assertClose(
        got,
        s.expected,
        TOL,
        `history ${settings.history}: step ${s.step} (${s.path}, tail ${s.tail})`,
      );
      if (s.path === "dmd") forecasts++;
      else fallbacks++;
      if (s.cacheDitFallback && got.some((v, i) => Math.abs(v - s.cacheDitFallback![i]) > 0.05)) deviations++;
    }
    assert.deepEqual([forecasts, fallbacks], [12, 12], "DMD forecasts and fallbacks");
    // DMDState's own ladder (the difference with the update two back) is what the engine does not copy.
    assert.ok(deviations >= 10, `DMDState's fallback differs from TaylorSeerState's on ${deviations} steps`);
  }
});
