import assert from "node:assert/strict";
import { KernelError } from "../../src/gpu/kernel.ts";
import { channelAffine } from "../../src/ops/channel_affine.ts";
import { channelAffine as channelAffineRef } from "../../src/ref/channel_affine.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// One f32 division and one addition per element: ~1 ulp of values up to ~10. A wrong channel is off by ~1.
const TOL = { atol: 2e-6, rtol: 1e-6 };

// [B, C, F, h, w] latents: a plane of 2*3*5 (scalar loads) and of 3*4 (vec4), two samples.
for (const shape of [[2, 5, 2, 3, 5], [2, 4, 1, 3, 4]]) {
  gpuTest(`channel_affine [${shape}] x / divisor[c] + shift[c] matches the reference`, async (ctx) => {
    const channels = shape[1];
    const size = shape.reduce((a, b) => a * b);
    const xData = randn(size, 11);
    const divisorData = randn(channels, 12).map((v) => 0.3 + Math.abs(v));
    const shiftData = randn(channels, 13);
    const x = ctx.pool.upload(xData, shape);
    const divisor = ctx.pool.upload(divisorData, [channels]);
    const shift = ctx.pool.upload(shiftData, [channels]);
    const op = channelAffine(ctx, x, { divisor, shift });
    const got = await runAndRead(ctx, op.dispatches, op.out);
    const plane = size / (shape[0] * channels);
    assertClose(got, channelAffineRef(xData, channels, plane, divisorData, shiftData), TOL);
    op.release();
    for (const t of [x, divisor, shift]) t.release();
  });
}

gpuTest("channel_affine rejects parameters of another channel count, naming them", (ctx) => {
  const x = ctx.pool.tensor([1, 4, 2, 2]);
  const four = ctx.pool.tensor([4]);
  const three = ctx.pool.tensor([3]);
  assert.throws(
    () => channelAffine(ctx, x, { divisor: four, shift: three }),
    (e: unknown) => e instanceof KernelError && /shift \[3\] must be f32 \[C\] = \[4\]/.test(e.message),
  );
  for (const t of [x, four, three]) t.release();
});
