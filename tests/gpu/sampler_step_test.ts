import assert from "node:assert/strict";
import { KernelError, submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { samplerUpdate, type SamplerUpdateOptions } from "../../src/ops/sampler_step.ts";
import * as ref from "../../src/ref/sampler_step.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// Unit-normal x, v, z (|.| < 6): with g = 3.5 the largest intermediate is |g (v_c - v_u)| < 42; the kernel
// rounds <= 7 times, each by <= 2^-24 of it (2.5e-6), the float64 reference once: |diff| < 2e-5. Swapped
// cond/uncond halves, a wrong g or a dropped term are off by ~0.1 or more.
const TOL = { atol: 2e-5, rtol: 0 };

interface Case {
  label: string;
  guidance?: number;
  a: number;
  b: number;
  c?: number;
}

const CASES: Case[] = [
  { label: "euler, no guidance", a: 1, b: -0.125 },
  { label: "euler, g = 0 (unconditional half only)", a: 1, b: -0.25, guidance: 0 },
  { label: "euler, g = 1 (conditional half only)", a: 1, b: -0.25, guidance: 1 },
  { label: "euler, g = 3.5", a: 1, b: -0.25, guidance: 3.5 },
  { label: "ddim eta > 0, noise, no guidance", a: 0.93, b: -0.41, c: 0.27 },
  { label: "ddim eta > 0, noise, g = 3.5", a: 0.93, b: -0.41, c: 0.27, guidance: 3.5 },
];

// 105 values (scalar path, part-filled workgroup) and 2 x 784 (vec4 path, v_u at an aligned offset).
const SHAPES = [[3, 1, 7, 5], [2, 1, 28, 28]];

for (const shape of SHAPES) {
  const size = shape.reduce((a, b) => a * b, 1);
  for (const c of CASES) {
    gpuTest(`sampler_step x [${shape}] ${c.label} matches reference`, async (ctx) => {
      const guided = c.guidance !== undefined;
      const x = randn(size, 1);
      const v = randn(guided ? 2 * size : size, 2);
      const z = c.c ? randn(size, 3) : undefined;
      const tx = ctx.pool.upload(x, shape);
      const tv = ctx.pool.upload(v, guided ? [2 * shape[0], ...shape.slice(1)] : shape);
      const tz = z && ctx.pool.upload(z, shape);
      const op = samplerUpdate(ctx, tx, tv, { ...c, noise: tz });
      const got = await runAndRead(ctx, op.dispatches, tx);
      assertClose(got, ref.samplerUpdate(x, v, { ...c, noise: z }), TOL, c.label);
      assert.deepEqual(await readFloats(ctx.gpu, tv), v, "v is read-only");
      op.release();
      for (const t of [tx, tv, tz]) t?.release();
    });
  }
}

gpuTest("sampler_step: three steps built up front keep their own coefficients", async (ctx) => {
  const shape = [2, 3, 11];
  const size = 66;
  const x = randn(size, 4);
  const tx = ctx.pool.upload(x, shape);
  const steps: { v: Float32Array; options: Omit<SamplerUpdateOptions, "noise"> }[] = [
    { v: randn(2 * size, 5), options: { a: 1, b: -0.5, guidance: 2 } },
    { v: randn(2 * size, 6), options: { a: 0.8, b: 0.3, guidance: 4 } },
    { v: randn(2 * size, 7), options: { a: 1.1, b: -0.2, guidance: 0.5 } },
  ];
  const velocities = steps.map((s) => ctx.pool.upload(s.v, [4, 3, 11]));
  const ops = steps.map((s, i) => samplerUpdate(ctx, tx, velocities[i], s.options));
  const got = await runAndRead(ctx, ops.flatMap((op) => op.dispatches), tx);
  const want = steps.reduce((acc, s) => ref.samplerUpdate(acc, s.v, s.options), x);
  assertClose(got, want, TOL, "x after three steps");
  // Encoding the same dispatches again applies the three steps once more.
  submitDispatches(ctx.gpu, ops.flatMap((op) => op.dispatches));
  const again = steps.reduce((acc, s) => ref.samplerUpdate(acc, s.v, s.options), want);
  assertClose(await readFloats(ctx.gpu, tx), again, TOL, "x after the steps encoded twice");
  for (const op of ops) op.release();
  for (const t of [tx, ...velocities]) t.release();
});

gpuTest("sampler_step with c = 0 never reads the noise tensor (NaN noise leaves x finite)", async (ctx) => {
  const shape = [2, 9];
  const x = randn(18, 8);
  const v = randn(36, 9);
  const tx = ctx.pool.upload(x, shape);
  const tv = ctx.pool.upload(v, [4, 9]);
  const tz = ctx.pool.upload(new Float32Array(18).fill(NaN), shape);
  const op = samplerUpdate(ctx, tx, tv, { a: 1, b: -0.3, c: 0, guidance: 1.5, noise: tz });
  const got = await runAndRead(ctx, op.dispatches, tx);
  assertClose(got, ref.samplerUpdate(x, v, { a: 1, b: -0.3, guidance: 1.5 }), TOL, "x");
  op.release();
  for (const t of [tx, tv, tz]) t.release();
});

gpuTest("sampler_step rejects bad shapes, buffers and coefficients before allocating", (ctx) => {
  const x = ctx.pool.tensor([2, 1, 4, 4]);
  const v = ctx.pool.tensor([2, 1, 4, 4]);
  const pair = ctx.pool.tensor([4, 1, 4, 4]);
  const triple = ctx.pool.tensor([6, 1, 4, 4]);
  const wide = ctx.pool.tensor([2, 1, 4, 5]);
  const noise = ctx.pool.tensor([2, 16]);
  const before = { pool: ctx.pool.stats(), kernels: ctx.kernels.size };
  const rejects = (options: SamplerUpdateOptions, pattern: RegExp, velocity = v, target = x) =>
    assert.throws(
      () => samplerUpdate(ctx, target, velocity, options),
      (e) => e instanceof KernelError && e.message.startsWith("sampler_step: ") && pattern.test(e.message),
      `expected ${pattern}`,
    );
  rejects(
    { a: 1, b: 1 },
    /x \[2, 1, 4, 4\], v \[6, 1, 4, 4\]: v must be \[B, \.\.\.\] = \[2, 1, 4, 4\] or \[2B, \.\.\.\] = \[4, 1, 4, 4\]/,
    triple,
  );
  rejects({ a: 1, b: 1 }, /v \[2, 1, 4, 5\]: v must be/, wide);
  rejects({ a: 1, b: 1 }, /v holds cond and uncond batches \[2B, \.\.\.\], guidance g is required/, pair);
  rejects({ a: 1, b: 1, guidance: 3 }, /guidance 3 needs v \[2B, \.\.\.\] = \[4, 1, 4, 4\]/);
  rejects({ a: 1, b: 1, c: 0.5 }, /c 0.5 != 0 needs options\.noise/);
  rejects({ a: 1, b: 1, c: 0.5, noise }, /noise \[2, 16\] must have the shape of x/);
  rejects({ a: 1, b: 1, c: 0.5, noise: x.view([2, 1, 4, 4]) }, /noise shares x's buffer/);
  rejects({ a: 1, b: 1 }, /v shares x's buffer/, x.view([2, 1, 4, 4]));
  rejects({ a: 1, b: Infinity }, /b Infinity must be finite/);
  rejects({ a: 1, b: 1, guidance: NaN }, /guidance NaN must be finite/, pair);
  assert.deepEqual({ pool: ctx.pool.stats(), kernels: ctx.kernels.size }, before, "something was allocated");
  for (const t of [x, v, pair, triple, wide, noise]) t.release();
});
