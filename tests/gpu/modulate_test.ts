import assert from "node:assert/strict";
import { KernelError } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { gatedResidual, modulate, silu } from "../../src/ops/modulate.ts";
import * as ref from "../../src/ref/modulate.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// One fused multiply-add per element on O(1) values: the kernel and the reference round once each, so they
// differ by about one ulp of |x|*(1+|scale|) + |shift| (<~ 10 here, ulp 1e-6); 1e-5 leaves a margin.
const TOL = { atol: 1e-5, rtol: 1e-6 };

// [B, T, C, k] with C not a multiple of 4 and counts that leave the last workgroup part-filled.
const SHAPES = [[3, 7, 33, 6], [2, 5, 3, 2], [1, 1, 1, 3]];

for (const [batch, tokens, channels, chunks] of SHAPES) {
  const shape = [batch, tokens, channels] as const;
  const size = batch * tokens * channels;
  for (const inPlace of [false, true]) {
    gpuTest(
      `modulate x ${shape} mod k=${chunks}${inPlace ? " in place" : ""} matches reference`,
      async (ctx) => {
        const x = randn(size, 1, 2);
        const mod = randn(batch * chunks * channels, 2);
        const tx = ctx.pool.upload(x, [...shape]);
        const tm = ctx.pool.upload(mod, [batch, chunks * channels]);
        const chunkSet = { shift: chunks - 1, scale: chunks > 2 ? 1 : 0 };
        const op = modulate(ctx, tx, tm, { ...chunkSet, inPlace });
        assert.equal(op.out === tx, inPlace);
        const got = await runAndRead(ctx, op.dispatches, op.out);
        assertClose(got, ref.modulate(x, shape, mod, chunkSet), TOL, "modulate");
        op.release();
        tx.release();
        tm.release();
      },
    );
  }

  gpuTest(`gated_residual x ${shape} mod k=${chunks} updates x in place, every gate chunk`, async (ctx) => {
    const x = randn(size, 3);
    const y = randn(size, 4);
    const mod = randn(batch * chunks * channels, 5);
    const tx = ctx.pool.upload(x, [...shape]);
    const ty = ctx.pool.upload(y, [...shape]);
    const tm = ctx.pool.upload(mod, [batch, chunks * channels]);
    let want: Float32Array = x;
    const dispatches = [];
    for (let gate = 0; gate < chunks; gate++) {
      const op = gatedResidual(ctx, tx, ty, tm, { gate });
      assert.equal(op.out, tx);
      dispatches.push(...op.dispatches);
      want = ref.gatedResidual(want, y, shape, mod, { gate });
    }
    assertClose(await runAndRead(ctx, dispatches, tx), want, TOL, "x after gated residuals");
    assert.deepEqual(await readFloats(ctx.gpu, ty), y, "y is read-only");
    for (const t of [tx, ty, tm]) t.release();
  });
}

// exp in fp32 is within a few ulp, and x*sigmoid(x) rounds twice more: relative error <~ 1e-6.
const SILU_TOL = { atol: 1e-7, rtol: 4e-6 };

for (const inPlace of [false, true]) {
  gpuTest(
    `silu ${inPlace ? "in place" : "out of place"} on [3, 1111], saturated tails included`,
    async (ctx) => {
      const x = randn(3 * 1111, 6, 4);
      x.set([0, -100, 100, -1e30, 1e30, 1e-30]);
      const tx = ctx.pool.upload(x, [3, 1111]);
      const op = silu(ctx, tx, { inPlace });
      assert.equal(op.out === tx, inPlace);
      assertClose(await runAndRead(ctx, op.dispatches, op.out), ref.silu(x), SILU_TOL, "silu");
      op.release();
      tx.release();
    },
  );
}

gpuTest("modulate ops reject bad chunks and shapes before allocating or dispatching", (ctx) => {
  const x = ctx.pool.tensor([2, 5, 16]);
  const y = ctx.pool.tensor([2, 5, 17]);
  const mod = ctx.pool.tensor([2, 6 * 16]);
  const oddMod = ctx.pool.tensor([2, 100]);
  const before = { pool: ctx.pool.stats(), kernels: ctx.kernels.size };
  const rejects = (f: () => unknown, pattern: RegExp) =>
    assert.throws(f, (e) => e instanceof KernelError && pattern.test(e.message), `expected ${pattern}`);

  rejects(
    () => gatedResidual(ctx, x, x, mod, { gate: 6 }),
    /^gated_residual: gate chunk 6 is outside 0\.\.5: mod \[2, 96\] holds k = 6 chunks of C = 16/,
  );
  rejects(
    () => modulate(ctx, x, mod, { shift: -1, scale: 1 }),
    /^modulate: shift chunk -1 is outside 0\.\.5/,
  );
  rejects(
    () => modulate(ctx, x, oddMod, { shift: 0, scale: 1 }),
    /mod \[2, 100\] must be \[B, k\*C\] = \[2, k\*16\]/,
  );
  rejects(
    () => gatedResidual(ctx, x, y, mod, { gate: 0 }),
    /y \[2, 5, 17\] must have the shape of x \[2, 5, 16\]/,
  );
  rejects(() => gatedResidual(ctx, x, x, mod, { gate: 0 }), /y shares x's buffer/);
  assert.deepEqual({ pool: ctx.pool.stats(), kernels: ctx.kernels.size }, before, "something was allocated");
  for (const t of [x, y, mod, oddMod]) t.release();
});
