// FoCaReference: values worked out by hand from cache-dit's rule, then against cache-dit's FoCaState over the
// scripted run of tools/foca_fixtures.py (fallbacks, gaps of 1 to 6 cached steps, the horizon clamp).
import assert from "node:assert/strict";
import { FoCaReference, focaWeight } from "../../src/ref/foca.ts";
import { assertClose } from "../support/assert_close.ts";
import { readFocaFixture } from "../support/foca_fixture.ts";

// Y(s) = 1 + 2s computed at steps 0 and 2. Step 1: one update only, so F_full = 1 (the window stays [1]).
// Step 3 (elapsed 1, weight 0.5): 5 + 0.5 * ((5 - 1) + (5 - 1)) = 9; the window becomes [9, 5].
// Step 4 (1): 5 + 1 * (4 + (9 - 5)) = 13; step 5 (1.5): 5 + 1.5 * (4 + 4) = 17;
// step 6 (clamped, 3/2 * 3/4 = 1.125): 5 + 1.125 * (4 + 4) = 14; step 7 (0.9): 5 + 0.9 * (4 + (14 - 17)) = 5.9.
Deno.test("FoCa reference: the fallback, the recursive window and the horizon clamp, by hand", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(focaWeight), [0.5, 1, 1.5, 1.125, 0.9, 0.75]);
  const foca = new FoCaReference();
  assert.throws(() => foca.approximate(0), /approximate before any update/);
  foca.update(0, [1]);
  assert.deepEqual([...foca.approximate(1)], [1]);
  foca.update(2, [5]);
  const forecasts = [3, 4, 5, 6, 7].map((step) => foca.approximate(step)[0]);
  assert.deepEqual(forecasts.slice(0, 4), [9, 13, 17, 14]);
  assert.ok(Math.abs(forecasts[4] - 5.9) < 1e-12, `step 7: ${forecasts[4]}`);
});

// The fixture is cache-dit's float64 result rounded to float32 once: within half an f32 ulp (2^-24
// relative) of the f64 reference, plus f64 rounding of a different operation order (~1e-15). A wrong weight,
// window or fallback is off by more than 0.1 (tools/foca_fixtures.py checks that).
const TOL = { atol: 1e-12, rtol: 2 ** -23 };

Deno.test("FoCa reference equals cache-dit's FoCaState over the scripted run", async () => {
  const { steps } = await readFocaFixture();
  const foca = new FoCaReference();
  let cached = 0;
  for (const s of steps) {
    if (s.computed) {
      foca.update(s.step, s.y);
      continue;
    }
    assertClose(foca.approximate(s.step), s.expected, TOL, `step ${s.step}`);
    cached++;
  }
  assert.equal(cached, 19);
});
