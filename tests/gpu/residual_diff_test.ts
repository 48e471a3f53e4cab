import assert from "node:assert/strict";
import { KernelError } from "../../src/gpu/kernel.ts";
import { residualDiff } from "../../src/ops/residual_diff.ts";
import { residualDiff as residualDiffRef, residualMeans } from "../../src/ref/residual_diff.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// fp32 sums of up to ~1e5 terms in a tree: relative error ~1e-6; the ratio doubles it.
const TOL = { atol: 1e-7, rtol: 1e-5 };

const CASES = [
  { shape: [1, 7, 5], samples: 1, downsample: 1 },
  { shape: [2, 49, 128], samples: 2, downsample: 1 },
  { shape: [3, 257, 33], samples: 3, downsample: 4 },
  { shape: [1, 4096, 64], samples: 1, downsample: 1 }, // several stage-1 chunks
];

for (const c of CASES) {
  gpuTest(
    `residual_diff ${c.shape} samples=${c.samples} downsample=${c.downsample} matches reference`,
    async (ctx) => {
      const size = c.shape.reduce((x, y) => x * y);
      const a = randn(size, 1);
      const noise = randn(size, 2, 0.1);
      const b = a.map((v, i) => v + noise[i] * (1 + (i % 3)));
      const ta = ctx.pool.upload(a, c.shape);
      const tb = ctx.pool.upload(b, c.shape);
      const op = residualDiff(ctx, ta, tb, { samples: c.samples, downsample: c.downsample });
      const got = await runAndRead(ctx, op.dispatches, op.result);
      const want = residualDiffRef(a, b, c.shape[c.shape.length - 1], c);
      assertClose(got, want, TOL, "diff");
      const means = await runAndRead(ctx, [], op.means);
      const wantMeans = residualMeans(a, b, c.shape[c.shape.length - 1], c).flat();
      assertClose(means, wantMeans, TOL, "mean|a-b| and mean|a|");
      assert.ok(
        want[0] > 0.05 && want[0] < 1,
        `reference diff ${want[0]} should be a real, non-trivial ratio`,
      );
      op.release();
      ta.release();
      tb.release();
    },
  );
}

gpuTest(
  "residual_diff of a tensor and an exact copy is 0; of zeros vs non-zeros is 'all change'",
  async (ctx) => {
    const a = randn(300, 3);
    const ta = ctx.pool.upload(a, [300]);
    const tb = ctx.pool.upload(a.slice(), [300]);
    const same = residualDiff(ctx, ta, tb);
    assert.deepEqual([...await runAndRead(ctx, same.dispatches, same.result)], [0, 0]);
    const zeros = ctx.pool.upload(new Float32Array(300), [300]);
    const fromZero = residualDiff(ctx, zeros, ta);
    const got = await runAndRead(ctx, fromZero.dispatches, fromZero.result);
    assert.ok(got[0] >= 1e29, `diff from an all-zero reference is ${got[0]}`);
  },
);

gpuTest("residual_diff rejects mismatched shapes and bad options before dispatching", (ctx) => {
  const a = ctx.pool.tensor([2, 8]);
  const b = ctx.pool.tensor([2, 9]);
  assert.throws(
    () => residualDiff(ctx, a, b),
    (e) => e instanceof KernelError && /\[2, 8\].*\[2, 9\]/.test(e.message),
  );
  assert.throws(
    () => residualDiff(ctx, a, a, { samples: 3 }),
    /samples 3 must be a positive integer dividing 16/,
  );
  assert.throws(() => residualDiff(ctx, a, a, { downsample: 9 }), /downsample 9 is outside 1\.\.8/);
  a.release();
  b.release();
});
