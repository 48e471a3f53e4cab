import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { KernelError } from "../../src/gpu/kernel.ts";
import { conv2d } from "../../src/ops/conv2d.ts";
import { conv2d as conv2dRef } from "../../src/ref/conv2d.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { encodeHalf } from "../support/half.ts";
import { randn } from "../support/random.ts";

// Unit-normal inputs and weights: an output sums C*K*K products of size ~1 (up to 45 here) whose f32 partial
// sums round by 2^-24 of ~sqrt(45) each: a random walk of ~1e-6. atol 2e-5 leaves a wide margin; a wrong
// tap, channel or padding is off by ~1.
const TOL = { atol: 2e-5, rtol: 1e-5 };

interface Case {
  x: [number, number, number, number];
  out: number;
  kernel: number;
  padding: number;
  upsample?: number;
  bias?: boolean;
  accumulate?: boolean;
  weights?: "f32" | "f16" | "bf16";
}

const CASES: Case[] = [
  { x: [1, 5, 6, 9], out: 7, kernel: 3, padding: 1, bias: true }, // odd channels and sizes
  { x: [2, 12, 4, 70], out: 3, kernel: 1, padding: 0 }, // 1x1, two column tiles, O < a lane's 4
  { x: [1, 3, 3, 5], out: 6, kernel: 3, padding: 1, upsample: 2, bias: true }, // Upsample2D: x2 then conv
  { x: [2, 4, 5, 5], out: 17, kernel: 3, padding: 0, accumulate: true }, // no padding; onto a residual
  { x: [1, 6, 7, 4], out: 8, kernel: 3, padding: 1, bias: true, weights: "f16" },
  { x: [1, 6, 7, 4], out: 5, kernel: 3, padding: 1, weights: "bf16", accumulate: true },
  // A 30-wide row: 8 column lanes of 8 channels each, 70 channels in two workgroups along z.
  { x: [1, 3, 3, 30], out: 70, kernel: 3, padding: 1, bias: true, weights: "f16" },
];

function uploadWeights(ctx: GpuContext, values: Float32Array, shape: number[], dtype: Case["weights"]) {
  if (!dtype || dtype === "f32") return { tensor: ctx.pool.upload(values, shape), values };
  const { bytes, rounded } = encodeHalf(values, dtype);
  return { tensor: ctx.pool.uploadBytes(bytes, shape, dtype), values: rounded };
}

for (const c of CASES) {
  const label = `conv2d x [${c.x}] -> ${c.out}, ${c.kernel}x${c.kernel} pad ${c.padding}` +
    `${c.upsample ? ` upsample ${c.upsample}` : ""}${c.bias ? " +bias" : ""}${c.accumulate ? " +=" : ""}` +
    ` (${c.weights ?? "f32"} weights) matches the reference`;
  gpuTest(label, async (ctx) => {
    const [batch, channels, height, width] = c.x;
    const xData = randn(batch * channels * height * width, 1);
    const wShape = [c.out, channels, c.kernel, c.kernel];
    const w = uploadWeights(ctx, randn(wShape.reduce((a, b) => a * b), 2), wShape, c.weights);
    const biasData = c.bias ? randn(c.out, 3) : undefined;
    const x = ctx.pool.upload(xData, c.x);
    const bias = biasData && ctx.pool.upload(biasData, [c.out]);
    const up = c.upsample ?? 1;
    const outShape = [
      batch,
      c.out,
      height * up + 2 * c.padding - c.kernel + 1,
      width * up + 2 * c.padding - c.kernel + 1,
    ];
    const onto = c.accumulate ? randn(outShape.reduce((a, b) => a * b), 4) : undefined;
    const out = onto && ctx.pool.upload(onto, outShape);
    const op = conv2d(ctx, x, w.tensor, {
      padding: c.padding,
      upsample: c.upsample,
      bias,
      out,
      accumulate: c.accumulate,
    });
    assert.deepEqual(op.out.shape, outShape);
    const got = await runAndRead(ctx, op.dispatches, op.out);
    assertClose(got, conv2dRef(xData, w.values, op.geometry, biasData, onto), TOL);
    op.release();
    for (const t of [x, w.tensor, bias, out]) t?.release();
  });
}

gpuTest("conv2d rejects bad shapes before dispatching, naming them", (ctx) => {
  const x = ctx.pool.tensor([1, 4, 5, 5]);
  const w = ctx.pool.tensor([8, 3, 3, 3]);
  const w4 = ctx.pool.tensor([8, 4, 3, 3]);
  const fail = (pattern: RegExp) => (e: unknown) => e instanceof KernelError && pattern.test(e.message);
  assert.throws(() => conv2d(ctx, x, w, { padding: 1 }), fail(/C of x \(4\) differs from C of w \(3\)/));
  assert.throws(() => conv2d(ctx, x, w4, { padding: 3 }), fail(/padding 3 must be in 0..K-1/));
  assert.throws(() => conv2d(ctx, x, w4, { padding: 1, accumulate: true }), fail(/accumulate needs out/));
  assert.throws(
    () => conv2d(ctx, x, w4, { padding: 1, bias: ctx.pool.tensor([7]) }),
    fail(/bias \[7\] must be f32 \[O\] = \[8\]/),
  );
  for (const t of [x, w, w4]) t.release();
});
