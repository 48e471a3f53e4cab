import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { KernelError } from "../../src/gpu/kernel.ts";
import { causalConv3d } from "../../src/ops/conv3d.ts";
import { causalConv3d as causalConv3dRef } from "../../src/ref/conv3d.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { encodeHalf } from "../support/half.ts";
import { randn } from "../support/random.ts";

// Unit-normal inputs and weights: an output sums C*KT*K*K products of size ~1 (up to 270 here) whose f32
// partial sums round by 2^-24 of ~sqrt(270) each: a random walk of ~1e-5 at worst. atol 5e-5 leaves a margin;
// a wrong tap, frame, channel block or sample is off by ~1.
const TOL = { atol: 5e-5, rtol: 1e-5 };

interface Case {
  /** x [T, B, C, H, W] */
  x: [number, number, number, number, number];
  out: number;
  kernel: number;
  temporal: number;
  padding: number;
  split?: number;
  bias?: boolean;
  accumulate?: boolean;
  weights?: "f32" | "f16" | "bf16";
}

const CASES: Case[] = [
  // Wan's 3x3x3 resnet convs on a one-frame chunk and on a four-frame one (two samples in a frame).
  { x: [1, 1, 5, 4, 6], out: 7, kernel: 3, temporal: 3, padding: 1, bias: true },
  { x: [4, 2, 3, 3, 5], out: 6, kernel: 3, temporal: 3, padding: 1, bias: true, accumulate: true },
  // time_conv: (3, 1, 1) to 2C channels that become two frames each, with B = 2.
  { x: [2, 2, 4, 3, 4], out: 8, kernel: 1, temporal: 3, padding: 0, split: 2, bias: true },
  // A 1x1x1 shortcut (no history), a 2-tap kernel, and wide rows in two column tiles.
  { x: [2, 3, 6, 2, 3], out: 5, kernel: 1, temporal: 1, padding: 0, bias: true },
  { x: [3, 1, 4, 3, 70], out: 9, kernel: 3, temporal: 2, padding: 1, weights: "f16" },
  { x: [2, 1, 10, 4, 4], out: 70, kernel: 3, temporal: 3, padding: 1, bias: true, weights: "bf16" },
];

function uploadWeights(ctx: GpuContext, values: Float32Array, shape: number[], dtype: Case["weights"]) {
  if (!dtype || dtype === "f32") return { tensor: ctx.pool.upload(values, shape), values };
  const { bytes, rounded } = encodeHalf(values, dtype);
  return { tensor: ctx.pool.uploadBytes(bytes, shape, dtype), values: rounded };
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

for (const c of CASES) {
  const label = `conv3d x [${c.x}] -> ${c.out}, ${c.temporal}x${c.kernel}x${c.kernel} pad ${c.padding}` +
    `${c.split ? ` split ${c.split}` : ""}${c.bias ? " +bias" : ""}${c.accumulate ? " +=" : ""}` +
    ` (${c.weights ?? "f32"} weights) matches the reference`;
  gpuTest(label, async (ctx) => {
    const [frames, batch, channels, height, width] = c.x;
    const split = c.split ?? 1;
    const xData = randn(count(c.x), 1);
    const historyShape = [c.temporal - 1, batch, channels, height, width];
    // History values differ from x's: frames taken from the wrong one, or zeros instead, are off by ~1.
    const historyData = c.temporal > 1 ? randn(count(historyShape), 5) : undefined;
    const wShape = [c.out, channels, c.temporal, c.kernel, c.kernel];
    const w = uploadWeights(ctx, randn(count(wShape), 2), wShape, c.weights);
    const biasData = c.bias ? randn(c.out, 3) : undefined;
    const x = ctx.pool.upload(xData, c.x);
    const history = historyData && ctx.pool.upload(historyData, historyShape);
    const bias = biasData && ctx.pool.upload(biasData, [c.out]);
    const outShape = [
      frames * split,
      batch,
      c.out / split,
      height + 2 * c.padding - c.kernel + 1,
      width + 2 * c.padding - c.kernel + 1,
    ];
    const onto = c.accumulate ? randn(count(outShape), 4) : undefined;
    const out = onto && ctx.pool.upload(onto, outShape);
    const op = causalConv3d(ctx, x, w.tensor, {
      padding: c.padding,
      history,
      bias,
      split: c.split,
      out,
      accumulate: c.accumulate,
    });
    assert.deepEqual(op.out.shape, outShape);
    const got = await runAndRead(ctx, op.dispatches, op.out);
    assertClose(got, causalConv3dRef(xData, w.values, op.geometry, historyData, biasData, onto), TOL);
    op.release();
    for (const t of [x, w.tensor, history, bias, out]) t?.release();
  });
}

gpuTest("conv3d rejects a missing or misshapen history, a bad split and bad shapes, naming them", (ctx) => {
  const x = ctx.pool.tensor([2, 1, 4, 3, 3]);
  const w = ctx.pool.tensor([6, 4, 3, 3, 3]);
  const pointwise = ctx.pool.tensor([6, 4, 1, 1, 1]);
  const wrongHistory = ctx.pool.tensor([2, 1, 4, 3, 4]);
  const fail = (pattern: RegExp) => (e: unknown) => e instanceof KernelError && pattern.test(e.message);
  assert.throws(
    () => causalConv3d(ctx, x, w, { padding: 1 }),
    fail(/history \(none\) must be f32 \[KT - 1, B, C, H, W\] = \[2, 1, 4, 3, 3\]/),
  );
  assert.throws(
    () => causalConv3d(ctx, x, w, { padding: 1, history: wrongHistory }),
    fail(/history \[2, 1, 4, 3, 4\]/),
  );
  assert.throws(
    () => causalConv3d(ctx, x, pointwise, { padding: 0, history: wrongHistory }),
    fail(/history is for KT > 1/),
  );
  assert.throws(
    () => causalConv3d(ctx, x, pointwise, { padding: 0, split: 4 }),
    fail(/split 4 must be a positive integer dividing O = 6/),
  );
  assert.throws(
    () => causalConv3d(ctx, x.view([2, 4, 3, 3]), pointwise, { padding: 0 }),
    fail(/x must be f32 \[T, B, C, H, W\]/),
  );
  assert.throws(
    () => causalConv3d(ctx, x, pointwise, { padding: 0, accumulate: true }),
    fail(/accumulate needs out/),
  );
  for (const t of [x, w, pointwise, wrongHistory]) t.release();
});
