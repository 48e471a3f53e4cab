import assert from "node:assert/strict";
import { KernelError } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { axpy } from "../../src/ops/axpy.ts";
import * as ref from "../../src/ref/axpy.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// y + alpha * x on unit-normal values (|v| < 6): the kernel rounds alpha * x and the sum (or one fma), the
// reference rounds once, so they differ by <= 2 ulp of ~10 (2.4e-6); alpha = +-1 is exact but for the sum.
// A dropped term or a wrong sign is off by ~1.
const TOL = { atol: 3e-6, rtol: 0 };

// Sizes not multiples of 4 (scalar path) and multiples (vec4), one and several workgroups, part-filled last.
const SHAPES = [[1], [7], [3, 1111], [2, 49, 128], [4, 3001]];
const ALPHAS = [-1, 1, 0.37];

for (const shape of SHAPES) {
  const size = shape.reduce((a, b) => a * b, 1);
  for (const mode of ["new", "given out", "in place"] as const) {
    gpuTest(`axpy ${formatCase(shape, mode)} matches reference for alpha ${ALPHAS}`, async (ctx) => {
      const x = randn(size, size);
      const y = randn(size, size + 1);
      const tx = ctx.pool.upload(x, shape);
      for (const alpha of ALPHAS) {
        const ty = ctx.pool.upload(y, shape);
        const given = mode === "given out" ? ctx.pool.tensor(shape) : undefined;
        const op = axpy(ctx, tx, ty, { alpha, out: given, inPlace: mode === "in place" });
        if (mode === "new") assert.ok(op.out.buffer !== tx.buffer && op.out.buffer !== ty.buffer);
        else assert.equal(op.out, mode === "in place" ? ty : given);
        assert.deepEqual(op.out.shape, shape);
        assertClose(
          await runAndRead(ctx, op.dispatches, op.out),
          ref.axpy(x, y, alpha),
          TOL,
          `alpha ${alpha}`,
        );
        if (mode !== "in place") assert.deepEqual(await readFloats(ctx.gpu, ty), y, "y is read-only");
        op.release();
        assert.equal(ty.released, false, "release() leaves y alone");
        ty.release();
        given?.release();
      }
      assert.deepEqual(await readFloats(ctx.gpu, tx), x, "x is read-only");
      tx.release();
    });
  }
}

function formatCase(shape: number[], mode: string): string {
  const size = shape.reduce((a, b) => a * b, 1);
  return `[${shape}] (${size % 4 === 0 ? "vec4" : "scalar"}) ${mode}`;
}

gpuTest("axpy with beta, and setCoefficients rewriting both weights between submits", async (ctx) => {
  const shape = [3, 1111];
  const x = randn(3333, 30);
  const y = randn(3333, 31);
  const [tx, ty] = [ctx.pool.upload(x, shape), ctx.pool.upload(y, shape)];
  const op = axpy(ctx, tx, ty, { alpha: 0.5, beta: -2 });
  assertClose(await runAndRead(ctx, op.dispatches, op.out), ref.axpy(x, y, 0.5, -2), TOL, "built with beta");
  // TaylorSeer's weights: 1/w and k^i/i! change per step on the same op.
  for (const [alpha, beta] of [[1 / 3, -1 / 3], [4.5, 1], [0, 0.25]]) {
    op.setCoefficients(alpha, beta);
    assertClose(
      await runAndRead(ctx, op.dispatches, op.out),
      ref.axpy(x, y, alpha, beta),
      TOL,
      `alpha ${alpha}, beta ${beta}`,
    );
  }
  assert.throws(() => op.setCoefficients(1, Infinity), /beta Infinity must be a finite number/);
  op.release();
  tx.release();
  ty.release();
});

gpuTest(
  "axpy with a constant: one tensor's affine map, x / s + c (FLUX's latent shift), odd and vec4 sizes",
  async (ctx) => {
    for (const size of [7, 64]) {
      const x = randn(size, 5);
      const tx = ctx.pool.upload(x, [size]);
      const op = axpy(ctx, tx, tx, { alpha: 1 / 0.3611, beta: 0, constant: 0.1159 });
      assertClose(
        await runAndRead(ctx, op.dispatches, op.out),
        ref.axpy(x, x, 1 / 0.3611, 0, 0.1159),
        TOL,
        `size ${size}`,
      );
      op.release();
      tx.release();
    }
  },
);

gpuTest("axpy residual round trip: residual = out - in, then in + residual restores out", async (ctx) => {
  const shape = [2, 49, 33];
  const before = randn(2 * 49 * 33, 20);
  const after = randn(2 * 49 * 33, 21);
  const tin = ctx.pool.upload(before, shape);
  const tout = ctx.pool.upload(after, shape);
  const residual = axpy(ctx, tin, tout, { alpha: -1 });
  const restored = axpy(ctx, residual.out, tin, { alpha: 1, inPlace: true });
  const got = await runAndRead(ctx, [...residual.dispatches, ...restored.dispatches], tin);
  // (after - before) + before rounds twice: within 1 ulp of |after| + 1 ulp of |residual| (< 2e-6 here).
  assertClose(got, after, TOL, "in + (out - in)");
  residual.release();
  restored.release();
  tin.release();
  tout.release();
});

gpuTest("axpy rejects bad shapes, buffers and alpha with a KernelError before allocating", (ctx) => {
  const x = ctx.pool.tensor([2, 5, 7]);
  const y = ctx.pool.tensor([2, 5, 7]);
  const flat = ctx.pool.tensor([70]);
  const ints = ctx.pool.tensor([2, 5, 7], "u32");
  const before = { pool: ctx.pool.stats(), kernels: ctx.kernels.size };
  const rejects = (f: () => unknown, pattern: RegExp) =>
    assert.throws(f, (e) => e instanceof KernelError && pattern.test(e.message), `expected ${pattern}`);
  rejects(
    () => axpy(ctx, x, flat, { alpha: 1 }),
    /^axpy: x \[2, 5, 7\], y \[70\]: shapes must be equal/,
  );
  rejects(() => axpy(ctx, x, y, { alpha: 1, out: flat }), /out \[70\] must have the shape of y/);
  rejects(() => axpy(ctx, x, y, { alpha: 1, out: x }), /out shares the buffer of x/);
  rejects(
    () => axpy(ctx, x, y, { alpha: 1, out: y }),
    /out shares the buffer of y; to write into y use inPlace/,
  );
  rejects(() => axpy(ctx, x, x.view([2, 5, 7]), { alpha: 1, inPlace: true }), /x shares y's buffer/);
  rejects(() => axpy(ctx, x, y, { alpha: 1, out: flat, inPlace: true }), /give out or inPlace, not both/);
  rejects(() => axpy(ctx, x, y, { alpha: NaN }), /alpha NaN must be a finite number/);
  rejects(() => axpy(ctx, ints, y, { alpha: 1 }), /x \[2, 5, 7\] is u32, expected f32/);
  assert.deepEqual({ pool: ctx.pool.stats(), kernels: ctx.kernels.size }, before, "something was allocated");
  for (const t of [x, y, flat, ints]) t.release();
});
