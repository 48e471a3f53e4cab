import assert from "node:assert/strict";
import { KernelError } from "../../src/gpu/kernel.ts";
import { channelRmsNorm } from "../../src/ops/channel_rms_norm.ts";
import { channelRmsNorm as channelRmsNormRef } from "../../src/ref/channel_rms_norm.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// Outputs ~1 (times gamma ~1): an f32 sum of C squares and one division carry ~1e-7 relative error. A norm
// over the wrong axis, a missing sqrt(C) or a gamma of the wrong channel is off by >= 1e-1.
const TOL = { atol: 1e-5, rtol: 1e-5 };

const CASES = [
  { shape: [2, 6, 5, 7], bias: false, silu: true, scale: 1 }, // odd plane: scalar loads
  { shape: [3, 12, 4, 4], bias: true, silu: false, scale: 30 }, // vec4 pixels, large values
  { shape: [1, 5, 8], bias: true, silu: true, scale: 0.01 }, // 3-D input, small values
];

for (const c of CASES) {
  for (const inPlace of [false, true]) {
    gpuTest(
      `channel_rms_norm [${c.shape}]${c.bias ? " +bias" : ""}${c.silu ? " + SiLU" : ""} x${c.scale}` +
        `${inPlace ? " in place" : ""} matches the reference`,
      async (ctx) => {
        const size = c.shape.reduce((a, b) => a * b);
        const channels = c.shape[1];
        const xData = randn(size, 8).map((v) => v * c.scale);
        const g = randn(channels, 9).map((v) => 1 + 0.2 * v);
        const b = c.bias ? randn(channels, 10, 0.1) : undefined;
        const x = ctx.pool.upload(xData, c.shape);
        const gamma = ctx.pool.upload(g, [channels]);
        const bias = b && ctx.pool.upload(b, [channels]);
        const op = channelRmsNorm(ctx, x, { gamma, bias, silu: c.silu, inPlace });
        assert.equal(op.out === x, inPlace);
        const got = await runAndRead(ctx, op.dispatches, op.out);
        assertClose(got, channelRmsNormRef(xData, op.geometry, g, b, c.silu), TOL);
        op.release();
        for (const t of [x, gamma, bias]) t?.release();
      },
    );
  }
}

gpuTest("channel_rms_norm of an all-zero pixel is zero (the eps floor), not NaN", async (ctx) => {
  const x = ctx.pool.upload(new Float32Array(2 * 3 * 4), [2, 3, 4]);
  const gamma = ctx.pool.upload(Float32Array.of(1, 2, 3), [3]);
  const op = channelRmsNorm(ctx, x, { gamma });
  assert.deepEqual([...await runAndRead(ctx, op.dispatches, op.out)], new Array(24).fill(0));
  op.release();
  for (const t of [x, gamma]) t.release();
});

gpuTest("channel_rms_norm rejects a gamma of another length, naming it", (ctx) => {
  const x = ctx.pool.tensor([1, 6, 4, 4]);
  const gamma = ctx.pool.tensor([4]);
  assert.throws(
    () => channelRmsNorm(ctx, x, { gamma }),
    (e: unknown) => e instanceof KernelError && /gamma \[4\] must be f32 \[C\] = \[6\]/.test(e.message),
  );
  for (const t of [x, gamma]) t.release();
});
