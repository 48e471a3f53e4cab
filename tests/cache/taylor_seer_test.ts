// TaylorSeer: the CPU reference against values worked out by hand, then the GPU calibrator against the
// reference over an irregular computed/cached sequence, in both of its modes.
import assert from "node:assert/strict";
import { TaylorSeer } from "../../src/cache/calibrators/taylor_seer.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { TaylorSeerReference } from "../../src/ref/taylor_seer.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// Y(s) = 1 + s^2 computed at steps 0, 2, 3:
//   update 0: d = [1];  update 2 (w 2): d = [5, (5-1)/2 = 2];  update 3 (w 1): d = [10, 5, 5-2 = 3].
// Cached step 5 (k 2): 10 + 5*2 + 3*2^2/2! = 26 (exact for a quadratic); step 4 (k 1): 10 + 5 + 1.5 = 16.5.
Deno.test("TaylorSeer reference: divided differences and the Taylor sum, by hand", () => {
  const expected: Record<number, [number, number][]> = { 0: [[4, 10], [5, 10]], 1: [[4, 15], [5, 20]] };
  expected[2] = [[4, 16.5], [5, 26]];
  for (const [n, cases] of Object.entries(expected)) {
    const seer = new TaylorSeerReference(Number(n));
    assert.throws(() => seer.approximate(0), /approximate before any update/);
    for (const s of [0, 2, 3]) seer.update(s, [1 + s * s]);
    assert.equal(seer.current.length, Number(n) + 1);
    for (const [step, value] of cases) assert.equal(seer.approximate(step)[0], value, `n ${n} step ${step}`);
  }
});

Deno.test("TaylorSeer reference: the first update has no derivative, the second one first order only", () => {
  const seer = new TaylorSeerReference(3);
  seer.update(4, [2, -1]);
  assert.deepEqual([...seer.approximate(9)], [2, -1]);
  seer.update(6, [6, -1]);
  assert.equal(seer.current.length, 2);
  assert.deepEqual([...seer.approximate(7)], [8, -1]); // 6 + (6-2)/2 * 1
});

// f32 GPU arithmetic against the f64 reference on unit-normal values with weights up to k^3/3! ~ 10:
// a few ulp of ~50 (1e-5 absolute) per term; a wrong weight or a stale derivative is off by > 0.1.
const TOL = { atol: 5e-5, rtol: 1e-5 };
const COMPUTED = new Set([0, 1, 2, 4, 7, 8]);

for (const mode of ["add", "replace"] as const) {
  for (const n of [1, 2, 3]) {
    gpuTest(
      `TaylorSeer GPU (${mode}, n_derivatives ${n}) matches the reference over 11 steps`,
      async (ctx) => {
        const shape = [2, 5, 7];
        const size = 70;
        const source = ctx.pool.tensor(shape);
        const target = ctx.pool.tensor(shape);
        const seer = new TaylorSeer(ctx, { source, target, mode, nDerivatives: n });
        const reference = new TaylorSeerReference(n);
        const recorder = new StepRecorder(ctx.gpu);
        assert.equal(seer.ready, false);
        for (let step = 0; step < 11; step++) {
          if (COMPUTED.has(step)) {
            const y = randn(size, 100 + step);
            ctx.pool.write(source, y);
            seer.update(step, recorder);
            reference.update(step, y);
            recorder.submit();
            continue;
          }
          const base = randn(size, 200 + step);
          ctx.pool.write(target, base);
          seer.approximate(step, recorder);
          const predicted = reference.approximate(step);
          const expected = mode === "add" ? predicted.map((v, i) => v + base[i]) : predicted;
          assertClose(await recorder.read(target), expected, TOL, `step ${step}`);
        }
        assert.equal(seer.ready, true);
        assert.equal(seer.memoryBytes(), 2 * (n + 1) * size * 4);
        seer.release();
        source.release();
        target.release();
      },
    );
  }
}
