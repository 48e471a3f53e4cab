import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { KernelError } from "../../src/gpu/kernel.ts";
import { linear } from "../../src/ops/linear.ts";
import { im2col, type Im2colGeometry, im2colOutputSize, unpatchify } from "../../src/ops/patch.ts";
import * as ref from "../../src/ref/patch.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// im2col and unpatchify only copy values (or write 0): the GPU must match the reference bit for bit.
const EXACT = { atol: 0, rtol: 0 };

function imageShape(g: Im2colGeometry): number[] {
  const { batch, channels, height, width } = g;
  return g.layout === "nhwc" ? [batch, height, width, channels] : [batch, channels, height, width];
}

function count(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const NCHW = "nchw" as const;
const NHWC = "nhwc" as const;
const IM2COL_CASES: { label: string; geom: Im2colGeometry }[] = [
  {
    label: "DiT patch embedding",
    geom: { batch: 2, channels: 1, height: 28, width: 28, kernel: 4, stride: 4, padding: 0, layout: NCHW },
  },
  {
    label: "classifier conv1",
    geom: { batch: 2, channels: 1, height: 28, width: 28, kernel: 3, stride: 2, padding: 1, layout: NCHW },
  },
  {
    label: "classifier conv2, channels last",
    geom: { batch: 2, channels: 32, height: 14, width: 14, kernel: 3, stride: 2, padding: 1, layout: NHWC },
  },
  ...[NCHW, NHWC].flatMap((layout) => [
    {
      label: "odd sizes, window past the bottom/right edge",
      geom: { batch: 3, channels: 5, height: 7, width: 10, kernel: 3, stride: 2, padding: 1, layout },
    },
    {
      label: "stride > kernel, first window wholly in the padding",
      geom: { batch: 2, channels: 3, height: 8, width: 5, kernel: 2, stride: 3, padding: 2, layout },
    },
    {
      label: "one window larger than the image",
      geom: { batch: 2, channels: 2, height: 3, width: 4, kernel: 5, stride: 1, padding: 1, layout },
    },
  ]),
];

for (const { label, geom } of IM2COL_CASES) {
  const { outHeight, outWidth } = im2colOutputSize(geom);
  const outShape = [geom.batch, outHeight * outWidth, geom.channels * geom.kernel ** 2];
  gpuTest(
    `im2col ${label}: ${geom.layout} [${imageShape(geom)}] k${geom.kernel} s${geom.stride} ` +
      `p${geom.padding} -> [${outShape}] into a NaN-filled out and a new tensor`,
    async (ctx) => {
      const shape = imageShape(geom);
      const x = randn(count(shape), count(shape));
      const want = ref.im2col(x, geom);
      assert.equal(want.length, count(outShape));
      const tx = ctx.pool.upload(x, shape);
      // NaN everywhere first: an output the kernel skips (e.g. a padding zero) cannot pass by accident.
      const given = ctx.pool.upload(new Float32Array(want.length).fill(NaN), outShape);
      const into = im2col(ctx, tx, geom, { out: given });
      assert.equal(into.out, given);
      assertClose(await runAndRead(ctx, into.dispatches, given), want, EXACT, "im2col into out");
      into.release();
      assert.equal(given.released, false, "release() leaves options.out alone");
      const fresh = im2col(ctx, tx, geom);
      assert.deepEqual(fresh.out.shape, outShape);
      assertClose(await runAndRead(ctx, fresh.dispatches, fresh.out), want, EXACT, "im2col new");
      fresh.release();
      tx.release();
      given.release();
    },
  );
}

/** Direct convolution in float64, PyTorch Conv2d weight [O, C, k, k], output channels last [B, Ho*Wo, O]. */
function conv2d(x: Float32Array, weight: Float32Array, bias: Float32Array, g: Im2colGeometry): Float64Array {
  const { batch, channels, height, width, kernel, stride, padding } = g;
  const { outHeight, outWidth } = im2colOutputSize(g);
  const outChannels = bias.length;
  const at = (b: number, c: number, y: number, xx: number) =>
    g.layout === "nhwc"
      ? x[((b * height + y) * width + xx) * channels + c]
      : x[((b * channels + c) * height + y) * width + xx];
  const out = new Float64Array(batch * outHeight * outWidth * outChannels);
  for (let b = 0; b < batch; b++) {
    for (let oy = 0; oy < outHeight; oy++) {
      for (let ox = 0; ox < outWidth; ox++) {
        for (let o = 0; o < outChannels; o++) {
          let sum = bias[o];
          for (let c = 0; c < channels; c++) {
            for (let ky = 0; ky < kernel; ky++) {
              for (let kx = 0; kx < kernel; kx++) {
                const y = oy * stride + ky - padding;
                const xx = ox * stride + kx - padding;
                if (y < 0 || y >= height || xx < 0 || xx >= width) continue;
                sum += at(b, c, y, xx) * weight[((o * channels + c) * kernel + ky) * kernel + kx];
              }
            }
          }
          out[((b * outHeight + oy) * outWidth + ox) * outChannels + o] = Math.max(sum, 0);
        }
      }
    }
  }
  return out;
}

async function convolve(ctx: GpuContext, geom: Im2colGeometry, outChannels: number) {
  const shape = imageShape(geom);
  const depth = geom.channels * geom.kernel ** 2;
  const x = randn(count(shape), 30);
  const weight = randn(outChannels * depth, 31); // [O, C, k, k] as PyTorch stores it
  const bias = randn(outChannels, 32);
  const tx = ctx.pool.upload(x, shape);
  const tw = ctx.pool.upload(weight, [outChannels, depth]);
  const tb = ctx.pool.upload(bias, [outChannels]);
  const cols = im2col(ctx, tx, geom);
  const conv = linear(ctx, cols.out, tw, { bias: tb, activation: "relu" });
  const got = await runAndRead(ctx, [...cols.dispatches, ...conv.dispatches], conv.out);
  const want = conv2d(x, weight, bias, geom);
  cols.release();
  conv.release();
  for (const t of [tx, tw, tb]) t.release();
  return { got, want };
}

// K = C*k*k unit-normal products summed in fp32 (partial sums ~sqrt(K)): <= K roundings of <= 2^-24 * 50 at
// K = 288 is 1e-4 in the worst case, ~1e-5 typically; a misordered patch is off by ~1.
const CONV_TOL = { atol: 1e-4, rtol: 1e-5 };

for (const layout of [NCHW, NHWC]) {
  gpuTest(
    `im2col + linear(relu) equals a direct ${layout} Conv2d with PyTorch's weight layout`,
    async (ctx) => {
      const geom = { batch: 2, channels: 3, height: 9, width: 7, kernel: 3, stride: 2, padding: 1, layout };
      const { got, want } = await convolve(ctx, geom, 5);
      assertClose(got, want, CONV_TOL, `${layout} conv`);
    },
  );
}

gpuTest(
  "im2col + linear(relu) equals the classifier's conv2 ([2,14,14,32] nhwc -> [2,49,64])",
  async (ctx) => {
    const geom = {
      batch: 2,
      channels: 32,
      height: 14,
      width: 14,
      kernel: 3,
      stride: 2,
      padding: 1,
      layout: NHWC,
    };
    const { got, want } = await convolve(ctx, geom, 64);
    assertClose(got, want, CONV_TOL, "conv2");
  },
);

const PATCH_CASES = [
  { batch: 2, channels: 1, height: 28, width: 28, patch: 4 }, // DiT final layer [2, 49, 16]
  { batch: 3, channels: 3, height: 6, width: 10, patch: 2 }, // C > 1 separates (c, py, px) from (py, px, c)
  { batch: 2, channels: 3, height: 6, width: 9, patch: 3, order: "channels_last" as const }, // diffusers' DiT
];

for (const geom of PATCH_CASES) {
  const { batch } = geom;
  const tokens = (geom.height / geom.patch) * (geom.width / geom.patch);
  const depth = geom.channels * geom.patch ** 2;
  gpuTest(
    `unpatchify [${batch}, ${tokens}, ${depth}] -> [${batch}, ${geom.channels}, ${geom.height}, ${geom.width}]` +
      ` (${geom.order ?? "channels_first"})`,
    async (ctx) => {
      const values = randn(batch * tokens * depth, 40);
      const t = ctx.pool.upload(values, [batch, tokens, depth]);
      const op = unpatchify(ctx, t, geom);
      assert.deepEqual(op.out.shape, [batch, geom.channels, geom.height, geom.width]);
      assertClose(
        await runAndRead(ctx, op.dispatches, op.out),
        ref.unpatchify(values, geom),
        EXACT,
        "unpatchify",
      );
      op.release();
      t.release();
    },
  );
}

gpuTest("unpatchify inverts im2col with kernel = stride = patch on an NCHW image", async (ctx) => {
  const [batch, channels, height, width, patch] = [2, 3, 6, 10, 2];
  const image = randn(batch * channels * height * width, 41);
  const t = ctx.pool.upload(image, [batch, channels, height, width]);
  const geom = { batch, channels, height, width, kernel: patch, stride: patch, padding: 0, layout: NCHW };
  const patches = im2col(ctx, t, geom);
  const back = unpatchify(ctx, patches.out, { batch, channels, height, width, patch });
  const got = await runAndRead(ctx, [...patches.dispatches, ...back.dispatches], back.out);
  assertClose(got, image, EXACT, "image after im2col then unpatchify");
  patches.release();
  back.release();
  t.release();
});

gpuTest(
  "im2col and unpatchify reject bad geometry and shapes with a KernelError before allocating",
  (ctx) => {
    const x = ctx.pool.tensor([2, 1, 8, 8]);
    const ints = ctx.pool.tensor([2, 1, 8, 8], "u32");
    const tokens = ctx.pool.tensor([2, 16, 4]);
    const wrongOut = ctx.pool.tensor([2, 16, 5]);
    const geom: Im2colGeometry = {
      batch: 2,
      channels: 1,
      height: 8,
      width: 8,
      kernel: 2,
      stride: 2,
      padding: 0,
      layout: NCHW,
    };
    const before = { pool: ctx.pool.stats(), kernels: ctx.kernels.size };
    const rejects = (f: () => unknown, pattern: RegExp) =>
      assert.throws(f, (e) => e instanceof KernelError && pattern.test(e.message), `expected ${pattern}`);
    rejects(
      () => im2col(ctx, x, { ...geom, channels: 2 }),
      /^im2col: x \[2, 1, 8, 8\], geometry \{batch 2, channels 2, 8x8, kernel 2, stride 2, padding 0, nchw\}: x holds 128 values, the geometry needs B\*C\*H\*W = 256/,
    );
    rejects(
      () => im2col(ctx, x, { ...geom, kernel: 11, padding: 1 }),
      /kernel 11 is larger than the padded image 10x10/,
    );
    rejects(() => im2col(ctx, x, { ...geom, stride: 0 }), /stride must be >= 1/);
    rejects(() => im2col(ctx, x, { ...geom, padding: -1 }), /padding must be an integer >= 0/);
    rejects(() => im2col(ctx, x, { ...geom, layout: "chw" as "nchw" }), /layout must be "nchw" or "nhwc"/);
    rejects(() => im2col(ctx, ints, geom), /x \[2, 1, 8, 8\] is u32, expected f32/);
    rejects(
      () => im2col(ctx, x, geom, { out: wrongOut }),
      /out \[2, 16, 5\] must hold \[2, 16, 4\] = \[B, Ho\*Wo, C\*k\*k\]/,
    );
    rejects(() => im2col(ctx, x, geom, { out: x.view([2, 16, 4]) }), /out shares x's buffer/);
    // 8x8 images with 2^14 zeros of padding each side as 1x1 windows: 2 * 32776^2 rows, over 8 GB of output.
    const limit = ctx.gpu.info.limits.maxStorageBufferBindingSize;
    rejects(
      () => im2col(ctx, x, { ...geom, kernel: 1, stride: 1, padding: 1 << 14 }),
      new RegExp(
        `out \\[2, 1074266176, 1\\] needs 8594129408 bytes, over maxStorageBufferBindingSize ${limit}`,
      ),
    );
    rejects(
      () => unpatchify(ctx, tokens, { batch: 2, channels: 1, height: 8, width: 9, patch: 2 }),
      /^unpatchify: tokens \[2, 16, 4\], geometry \{batch 2, channels 1, 8x9, patch 2\}: height and width must be multiples of patch 2/,
    );
    rejects(
      () => unpatchify(ctx, tokens, { batch: 2, channels: 2, height: 8, width: 8, patch: 2 }),
      /tokens hold 128 values, \[B, \(H\/p\)\*\(W\/p\), C\*p\*p\] = \[2, 16, 8\] needs 256/,
    );
    rejects(
      () => unpatchify(ctx, tokens, { batch: 2, channels: 1, height: 8, width: 8, patch: 0 }),
      /patch must be integers >= 1/,
    );
    assert.deepEqual(
      { pool: ctx.pool.stats(), kernels: ctx.kernels.size },
      before,
      "something was allocated",
    );
    for (const t of [x, ints, tokens, wrongOut]) t.release();
  },
);
