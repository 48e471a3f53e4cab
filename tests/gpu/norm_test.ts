import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { KernelError } from "../../src/gpu/kernel.ts";
import {
  lanesFor,
  layerNorm,
  layerNormModulate,
  type NormOp,
  rmsNorm,
  rmsNormInPlace,
} from "../../src/ops/norm.ts";
import * as ref from "../../src/ref/norm.ts";
import { maxAbsDiff } from "../../src/gpu/deterministic_input.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn, uniform } from "../support/random.ts";

// Per row the kernel sums <= 4099 fp32 terms (<= 32 per lane by default, then a <= 8-level tree): mean and variance
// carry a relative error ~1e-6 and inverseSqrt ~2 ulp, so an output y of O(1) is off by ~2e-6*|y| + 1e-7.
// atol = rtol = 1e-5 leaves a 5x margin; a wrong eps, a missing bias or a stray row is off by far more.
const TOL = { atol: 1e-5, rtol: 1e-5 };

const CHANNELS = [1, 3, 128, 3072, 4099];

function rowsFor(channels: number): number {
  return channels >= 1024 ? 3 : 37; // 37 rows leave the last workgroup part-filled for every small C
}

async function run(ctx: GpuContext, op: NormOp): Promise<Float32Array> {
  const got = await runAndRead(ctx, op.dispatches, op.out);
  op.release();
  return got;
}

for (const channels of CHANNELS) {
  const rows = rowsFor(channels);
  for (const affine of [false, true]) {
    gpuTest(
      `layer_norm [${rows}, ${channels}] ${affine ? "affine" : "non-affine"} matches reference`,
      async (ctx) => {
        const x = randn(rows * channels, channels, 2);
        const weight = affine ? uniform(channels, 7, 0.5, 1.5) : undefined;
        const bias = affine ? randn(channels, 8) : undefined;
        const tx = ctx.pool.upload(x, [rows, channels]);
        const tw = weight && ctx.pool.upload(weight, [channels]);
        const tb = bias && ctx.pool.upload(bias, [channels]);
        const got = await run(ctx, layerNorm(ctx, tx, { weight: tw, bias: tb }));
        assertClose(got, ref.layerNorm(x, channels, { weight, bias }), TOL, "layer_norm");
        for (const t of [tx, tw, tb]) t?.release();
      },
    );
    gpuTest(
      `rms_norm [${rows}, ${channels}] ${affine ? "with" : "without"} weight matches reference`,
      async (ctx) => {
        const x = randn(rows * channels, 100 + channels, 3);
        const weight = affine ? uniform(channels, 9, 0.5, 1.5) : undefined;
        const tx = ctx.pool.upload(x, [rows, channels]);
        const tw = weight && ctx.pool.upload(weight, [channels]);
        const got = await run(ctx, rmsNorm(ctx, tx, { weight: tw, eps: 1e-5 }));
        assertClose(got, ref.rmsNorm(x, channels, { weight, eps: 1e-5 }), TOL, "rms_norm");
        tx.release();
        tw?.release();
      },
    );
  }
}

gpuTest(
  "layer_norm gives the same rows for every lanes-per-row split, naive one-per-row included",
  async (ctx) => {
    const [rows, channels] = [21, 130];
    const x = randn(rows * channels, 11);
    const tx = ctx.pool.upload(x, [3, 7, channels]); // rows are every dimension but the last
    const want = ref.layerNorm(x, channels, { eps: 1e-3 });
    for (const lanes of new Set([1, 8, lanesFor(channels), 256])) {
      const got = await run(ctx, layerNorm(ctx, tx, { lanes, eps: 1e-3 }));
      assertClose(got, want, TOL, `layer_norm lanes ${lanes}`);
    }
    tx.release();
  },
);

// Rows of mean 1e3 and std 1. Two-pass: the fp32 mean of ~1e3 is off by up to ~1e-4 (its ulp is 6e-5 and
// the row sum of ~3e6 rounds at 0.25), which shifts each y by that over std 1: atol 2e-3 covers it.
// One-pass E[x^2] - E[x]^2 fails this: x^2 ~ 1e6 rounds at 0.06, and the variance of 1 is what is left
// after cancelling two numbers of 1e6 (checked below, so the test is known to be able to fail).
const LARGE_MEAN_TOL = { atol: 2e-3, rtol: 0 };

/** One-pass fp32 LayerNorm with pairwise sums: the most accurate order for it, so a fair strawman. */
function onePassFp32(x: Float32Array, channels: number): Float32Array {
  const pairwise = (v: Float32Array): number =>
    v.length === 1 ? v[0] : Math.fround(
      pairwise(v.subarray(0, v.length >> 1)) + pairwise(v.subarray(v.length >> 1)),
    );
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length; r += channels) {
    const row = x.subarray(r, r + channels);
    const mean = Math.fround(pairwise(row) / channels);
    const meanSq = Math.fround(pairwise(row.map((v) => Math.fround(v * v))) / channels);
    const rstd = Math.fround(1 / Math.sqrt(Math.max(0, meanSq - Math.fround(mean * mean)) + 1e-6));
    for (let c = 0; c < channels; c++) out[r + c] = (row[c] - mean) * rstd;
  }
  return out;
}

gpuTest("layer_norm is exact to fp32 on rows of mean 1e3 and std 1 (two-pass variance)", async (ctx) => {
  const [rows, channels] = [4, 3072];
  const x = randn(rows * channels, 21).map((v) => 1e3 + v);
  const tx = ctx.pool.upload(x, [rows, channels]);
  const got = await run(ctx, layerNorm(ctx, tx));
  const want = ref.layerNorm(x, channels);
  assertClose(got, want, LARGE_MEAN_TOL, "layer_norm, mean 1e3");
  const onePassErr = maxAbsDiff(onePassFp32(x, channels), want);
  assert.ok(onePassErr > 10 * LARGE_MEAN_TOL.atol, `one-pass variance is off by only ${onePassErr}`);
  tx.release();
});

// q/k rows of qkv [B, N, 3*H*D] normalised in place, v left bit-for-bit untouched.
for (const [batch, tokens, heads, headDim] of [[2, 5, 3, 24], [1, 9, 2, 7], [2, 3, 4, 128]]) {
  gpuTest(`rms_norm_in_place on q and k of qkv [${batch}, ${tokens}, 3*${heads}*${headDim}]`, async (ctx) => {
    const width = 3 * heads * headDim;
    const qkv = randn(batch * tokens * width, headDim, 2);
    const wq = uniform(headDim, 31, 0.5, 1.5);
    const wk = uniform(headDim, 32, 0.5, 1.5);
    const tqkv = ctx.pool.upload(qkv, [batch, tokens, width]);
    const twq = ctx.pool.upload(wq, [headDim]);
    const twk = ctx.pool.upload(wk, [headDim]);
    const dims = { tokens: batch * tokens, heads, headDim };
    const q = rmsNormInPlace(ctx, { tensor: tqkv, offset: 0, rowStride: width }, dims, { weight: twq });
    const k = rmsNormInPlace(ctx, { tensor: tqkv, offset: heads * headDim, rowStride: width }, dims, {
      weight: twk,
    });
    assert.equal(q.out, tqkv);
    const got = await runAndRead(ctx, [...q.dispatches, ...k.dispatches], tqkv);
    let want = ref.rmsNormInPlace(qkv, { offset: 0, rowStride: width }, dims, { weight: wq });
    want = ref.rmsNormInPlace(want, { offset: heads * headDim, rowStride: width }, dims, { weight: wk });
    assertClose(got, want, TOL, "qkv after q/k norm");
    for (let r = 0; r < batch * tokens; r++) {
      const v = r * width + 2 * heads * headDim;
      assert.deepEqual(
        got.subarray(v, v + heads * headDim),
        qkv.subarray(v, v + heads * headDim),
        `v of row ${r}`,
      );
    }
    q.release();
    k.release();
    for (const t of [tqkv, twq, twk]) t.release();
  });
}

gpuTest("rms_norm_in_place without weight at an odd offset and padded row stride", async (ctx) => {
  const [tokens, heads, headDim, offset, rowStride] = [6, 2, 5, 3, 13];
  const data = randn(offset + tokens * rowStride, 41);
  const t = ctx.pool.upload(data, [data.length]);
  const op = rmsNormInPlace(ctx, { tensor: t, offset, rowStride }, { tokens, heads, headDim });
  const got = await runAndRead(ctx, op.dispatches, t);
  assertClose(got, ref.rmsNormInPlace(data, { offset, rowStride }, { tokens, heads, headDim }), TOL, "view");
  op.release();
  t.release();
});

// (1 + scale) and shift of O(1) add about one ulp of O(3) values to the layer_norm error above.
const MODULATE_TOL = { atol: 2e-5, rtol: 2e-5 };

for (
  const [batch, tokens, channels, chunks, shift, scale] of [[3, 5, 40, 6, 3, 4], [2, 7, 3, 2, 1, 0], [
    2,
    2,
    3072,
    6,
    0,
    1,
  ]]
) {
  gpuTest(
    `layer_norm_modulate x [${batch}, ${tokens}, ${channels}], mod k=${chunks}, shift ${shift} scale ${scale}`,
    async (ctx) => {
      const x = randn(batch * tokens * channels, 51, 3);
      const mod = randn(batch * chunks * channels, 52, 0.5);
      const tx = ctx.pool.upload(x, [batch, tokens, channels]);
      const tm = ctx.pool.upload(mod, [batch, chunks * channels]);
      const got = await run(ctx, layerNormModulate(ctx, tx, tm, { shift, scale }));
      const want = ref.layerNormModulate(x, [batch, tokens, channels], mod, { shift, scale });
      assertClose(got, want, MODULATE_TOL, "layer_norm_modulate");
      tx.release();
      tm.release();
    },
  );
}

gpuTest(
  "layer_norm_modulate with the LayerNorm's own weight and bias (affine first), eps 1e-5",
  async (ctx) => {
    const [batch, tokens, channels] = [2, 5, 12];
    const x = randn(batch * tokens * channels, 53, 2);
    const mod = randn(batch * 6 * channels, 54, 0.5);
    const weight = randn(channels, 55).map((v) => 1 + 0.3 * v);
    const bias = randn(channels, 56, 0.2);
    const [tx, tm, tw, tb] = [
      ctx.pool.upload(x, [batch, tokens, channels]),
      ctx.pool.upload(mod, [batch, 6 * channels]),
      ctx.pool.upload(weight, [channels]),
      ctx.pool.upload(bias, [channels]),
    ];
    const got = await run(
      ctx,
      layerNormModulate(ctx, tx, tm, { shift: 3, scale: 4, eps: 1e-5, weight: tw, bias: tb }),
    );
    const want = ref.layerNormModulate(x, [batch, tokens, channels], mod, { shift: 3, scale: 4 }, {
      eps: 1e-5,
      weight,
      bias,
    });
    assertClose(got, want, MODULATE_TOL, "layer_norm_modulate affine");
    for (const t of [tx, tm, tw, tb]) t.release();
  },
);

gpuTest(
  "layer_norm and layer_norm_modulate write into a given out, which release() leaves alone",
  async (ctx) => {
    const [batch, tokens, channels] = [2, 3, 20];
    const x = randn(batch * tokens * channels, 57, 2);
    const mod = randn(batch * 2 * channels, 58, 0.5);
    const tx = ctx.pool.upload(x, [batch, tokens, channels]);
    const tm = ctx.pool.upload(mod, [batch, 2 * channels]);
    const out = ctx.pool.tensor([batch, tokens, channels]);
    for (
      const [what, op, want] of [
        ["layer_norm", layerNorm(ctx, tx, { out }), ref.layerNorm(x, channels)],
        [
          "layer_norm_modulate",
          layerNormModulate(ctx, tx, tm, { shift: 0, scale: 1, out }),
          ref.layerNormModulate(x, [batch, tokens, channels], mod, { shift: 0, scale: 1 }),
        ],
      ] as const
    ) {
      assert.equal(op.out, out, what);
      assertClose(await run(ctx, op), want, MODULATE_TOL, what);
      assert.equal(out.released, false, `${what}: release() freed the caller's out`);
    }
    for (const t of [tx, tm, out]) t.release();
  },
);

gpuTest("norm ops reject bad shapes, chunks, views and options before allocating or dispatching", (ctx) => {
  const x = ctx.pool.tensor([4, 128]);
  const w127 = ctx.pool.tensor([127]);
  const x3 = ctx.pool.tensor([2, 5, 64]);
  const mod = ctx.pool.tensor([2, 6 * 64]);
  const mod3 = ctx.pool.tensor([3, 6 * 64]);
  const qkv = ctx.pool.tensor([2, 5, 3 * 4 * 8]);
  const before = { pool: ctx.pool.stats(), kernels: ctx.kernels.size };
  const rejects = (f: () => unknown, pattern: RegExp) =>
    assert.throws(f, (e) => e instanceof KernelError && pattern.test(e.message), `expected ${pattern}`);

  rejects(
    () => layerNorm(ctx, x, { weight: w127 }),
    /^layer_norm: weight \[127\] f32 must be f32 \[128\].*\[4, 128\]/,
  );
  rejects(() => rmsNorm(ctx, x, { weight: w127 }), /^rms_norm: weight \[127\].*\[128\]/);
  rejects(() => layerNorm(ctx, x, { lanes: 3 }), /lanes 3 must be a power of two in 1\.\.256/);
  rejects(() => layerNorm(ctx, x, { eps: -1 }), /eps -1 must be a finite number >= 0/);
  rejects(
    () => layerNormModulate(ctx, x3, mod, { shift: 0, scale: 6 }),
    /^layer_norm_modulate: scale chunk 6 is outside 0\.\.5: mod \[2, 384\] holds k = 6 chunks of C = 64/,
  );
  rejects(
    () => layerNormModulate(ctx, x3, mod3, { shift: 0, scale: 1 }),
    /mod \[3, 384\] must be \[B, k\*C\] = \[2, k\*64\]/,
  );
  rejects(() => layerNormModulate(ctx, x, mod, { shift: 0, scale: 1 }), /x \[4, 128\] must be \[B, T, C\]/);
  rejects(
    () => layerNorm(ctx, x, { out: w127 }),
    /^layer_norm: out \[127\] f32 must be f32 of x's shape \[4, 128\]/,
  );
  rejects(
    () => layerNormModulate(ctx, x3, mod, { shift: 0, scale: 1, out: x3 }),
    /^layer_norm_modulate: out shares the buffer of an input/,
  );
  const dims = { tokens: 10, heads: 4, headDim: 8 };
  rejects(
    () => rmsNormInPlace(ctx, { tensor: qkv, offset: 2 * 32 + 1, rowStride: 96 }, dims),
    /^rms_norm_in_place: view \(offset 65, rowStride 96\) of f32 tensor \[2, 5, 96\]: 10 rows of heads\*headDim = 32 reach element 961; allowed: .* <= 960/,
  );
  rejects(
    () => rmsNormInPlace(ctx, { tensor: qkv, offset: 0, rowStride: 31 }, dims),
    /rowStride must be an integer >= heads\*headDim = 32/,
  );
  rejects(
    () => rmsNormInPlace(ctx, { tensor: qkv, offset: 0, rowStride: 96 }, dims, { weight: w127 }),
    /weight \[127\] f32 must be f32 \[8\]/,
  );
  assert.deepEqual({ pool: ctx.pool.stats(), kernels: ctx.kernels.size }, before, "something was allocated");
  for (const t of [x, w127, x3, mod, mod3, qkv]) t.release();
});
