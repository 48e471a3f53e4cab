import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { KernelError } from "../../src/gpu/kernel.ts";
import { Tensor } from "../../src/gpu/tensor.ts";
import {
  type AttentionDims,
  crossAttention,
  flashAttention,
  type FlashAttentionOptions,
  type QkvViews,
} from "../../src/ops/attention.ts";
import { naiveAttention } from "../../src/ops/attention_naive.ts";
import {
  crossAttention as crossAttentionRef,
  flashAttention as attentionRef,
  type HostAttentionOptions,
  type HostQkv,
} from "../../src/ref/attention.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn, rng } from "../support/random.ts";

// Unit-normal q, k, v: a score sums headDim fp32 products to ~scale * 0.8 * headDim = 0.8 * sqrt(headDim)
// (<= 9 at 128), rounding by ~2^-24 of that per addition (a random walk, ~1e-6); each weight exp(s - m)
// carries that relative error, and the output (a convex combination of v rows, |v| < ~5) sums up to 2048
// positive terms rounding by 2^-24 each. The reference is float64 with a two-pass softmax. Measured max
// |diff| 1.1e-6 (130 tokens), <= 6e-7 in every other case (3.8e-7 at 2048 tokens); atol = rtol = 1e-5 leaves
// a 9x margin. Dropping one key or the rescale of the accumulator is off by >= 1e-2 in every case.
const TOL = { atol: 1e-5, rtol: 1e-5 };

/** q, k, v of one stream on the GPU and on the host, as views of one fused qkv [B, N, 3*H*D]. */
interface Stream {
  gpu: QkvViews;
  host: HostQkv;
  tensor: Tensor;
}

function fusedQkv(ctx: GpuContext, data: Float32Array, tokens: number, dims: AttentionDims): Stream {
  const width = dims.heads * dims.headDim;
  const rowStride = 3 * width;
  const tensor = ctx.pool.upload(data, [dims.batch, tokens, rowStride]);
  const at = (i: number) => ({ offset: i * width, rowStride });
  return {
    gpu: { q: { tensor, ...at(0) }, k: { tensor, ...at(1) }, v: { tensor, ...at(2) }, tokens },
    host: { q: { data, ...at(0) }, k: { data, ...at(1) }, v: { data, ...at(2) }, tokens },
    tensor,
  };
}

async function runFlash(
  ctx: GpuContext,
  image: Stream,
  dims: AttentionDims,
  options: Omit<FlashAttentionOptions, "text"> & { text?: Stream } = {},
): Promise<Float32Array> {
  const op = flashAttention(ctx, image.gpu, dims, { ...options, text: options.text?.gpu });
  const got = await runAndRead(ctx, op.dispatches, op.out);
  op.release();
  return got;
}

/** Options of one stream, a score bias [heads, N, N] given as host data. */
type MaskOptions = Pick<HostAttentionOptions, "scale" | "causal"> & { scoreBias?: Float32Array };

/**
 * A fused qkv (random with seed `init`, or the given data) against the reference; returns the output and
 * the reference's output without the masks.
 */
async function checkFused(
  ctx: GpuContext,
  tokens: number,
  dims: AttentionDims,
  init: number | Float32Array,
  options: MaskOptions = {},
) {
  const data = typeof init === "number"
    ? randn(dims.batch * tokens * 3 * dims.heads * dims.headDim, init)
    : init;
  const stream = fusedQkv(ctx, data, tokens, dims);
  const bias = options.scoreBias && ctx.pool.upload(options.scoreBias, [dims.heads, tokens, tokens]);
  const got = await runFlash(ctx, stream, dims, { ...options, scoreBias: bias });
  stream.tensor.release();
  bias?.release();
  const want = attentionRef(stream.host, dims, options);
  assertClose(got, want, TOL, `attention [${dims.batch}, ${tokens}, ${dims.heads}x${dims.headDim}]`);
  return { got, data, unmasked: attentionRef(stream.host, dims, { scale: options.scale }) };
}

/** Asserts that the masks moved the output: one dropped mask term is off by far more than TOL. */
function assertMasked(got: Float32Array, unmasked: Float32Array, what: string): void {
  const moved = got.reduce((worst, v, i) => Math.max(worst, Math.abs(v - unmasked[i])), 0);
  assert.ok(moved > 1e-2, `${what}: the output equals attention without the mask (max |diff| ${moved})`);
}

gpuTest("flash_attention of 1 token returns its v row for every batch and head", async (ctx) => {
  const dims = { batch: 2, heads: 3, headDim: 32 };
  const { got, data } = await checkFused(ctx, 1, dims, 1);
  const width = dims.heads * dims.headDim;
  for (let b = 0; b < dims.batch; b++) {
    const v = data.subarray(b * 3 * width + 2 * width, (b + 1) * 3 * width);
    assertClose(got.subarray(b * width, (b + 1) * width), v, TOL, `batch ${b} against v`);
  }
});

for (const tokens of [7, 49, 130]) {
  gpuTest(`flash_attention odd length ${tokens}, B=2 H=3 D=64 in fused qkv`, async (ctx) => {
    await checkFused(ctx, tokens, { batch: 2, heads: 3, headDim: 64 }, 10 + tokens);
  });
}

// 8: the smallest tile; 72: DiT-XL and PixArt (one row per lane, not a power of two).
for (const headDim of [8, 32, 72, 96, 128, 512]) {
  gpuTest(`flash_attention head dim ${headDim}, 37 tokens, B=3 H=2 in fused qkv`, async (ctx) => {
    await checkFused(ctx, 37, { batch: 3, heads: 2, headDim }, 20 + headDim);
  });
}

gpuTest("flash_attention 2048 tokens, B=1 H=1 D=64", async (ctx) => {
  await checkFused(ctx, 2048, { batch: 1, heads: 1, headDim: 64 }, 30);
});

gpuTest(
  "flash_attention separate padded q/k/v tensors, scale 0.3, into a given out tensor",
  async (ctx) => {
    const dims = { batch: 2, heads: 2, headDim: 32 };
    const tokens = 19;
    const width = dims.heads * dims.headDim;
    const layouts = [[4, 72], [0, 64], [12, 80]]; // [offset, rowStride] of q, k, v: gaps between rows
    const [q, k, v] = layouts.map(([offset, rowStride], i) => {
      const size = offset + dims.batch * tokens * rowStride;
      const data = randn(size, 40 + i);
      return { offset, rowStride, data, tensor: ctx.pool.upload(data, [size]) };
    });
    const out = ctx.pool.tensor([dims.batch, tokens, width]);
    const views = { q, k, v, tokens };
    const op = flashAttention(ctx, views, dims, { scale: 0.3, out });
    assert.equal(op.out, out);
    const got = await runAndRead(ctx, op.dispatches, out);
    assertClose(got, attentionRef(views, dims, { scale: 0.3 }), TOL, "padded views");
    op.release();
    assert.equal(out.released, false, "release() must leave a caller's out tensor alone");
    for (const t of [q.tensor, k.tensor, v.tensor, out]) t.release();
  },
);

gpuTest(
  "flash_attention joint text (5 tokens) + image (49 tokens), B=2 H=2 D=64: the concatenated sequence",
  async (ctx) => {
    const dims = { batch: 2, heads: 2, headDim: 64 };
    const [textTokens, imageTokens] = [5, 49];
    const rowLength = 3 * dims.heads * dims.headDim;
    const textData = randn(dims.batch * textTokens * rowLength, 50);
    const imageData = randn(dims.batch * imageTokens * rowLength, 51);
    const text = fusedQkv(ctx, textData, textTokens, dims);
    const image = fusedQkv(ctx, imageData, imageTokens, dims);
    const got = await runFlash(ctx, image, dims, { text });
    // The reference over one fused qkv holding, per batch entry, the text rows then the image rows.
    const total = textTokens + imageTokens;
    const joined = new Float32Array(dims.batch * total * rowLength);
    for (let b = 0; b < dims.batch; b++) {
      joined.set(
        textData.subarray(b * textTokens * rowLength, (b + 1) * textTokens * rowLength),
        b * total * rowLength,
      );
      joined.set(
        imageData.subarray(b * imageTokens * rowLength, (b + 1) * imageTokens * rowLength),
        (b * total + textTokens) * rowLength,
      );
    }
    const width = dims.heads * dims.headDim;
    const at = (i: number) => ({ data: joined, offset: i * width, rowStride: rowLength });
    const want = attentionRef({ q: at(0), k: at(1), v: at(2), tokens: total }, dims);
    assertClose(got, want, TOL, "joint attention");
    // Text and image must really attend each other: image-only attention differs by far more than TOL.
    const imageOnly = attentionRef(image.host, dims);
    const firstImageRow = textTokens * width;
    assert.ok(
      Math.abs(got[firstImageRow] - imageOnly[0]) > 1e-3,
      "the first image row ignored the text keys",
    );
    text.tensor.release();
    image.tensor.release();
  },
);

// Wan's cross-attention: video-token queries [B, Nq, H*D] (a padded view) attend text keys and values of a
// fused kv [B, Nk, 2*H*D]. D = 24 has 4 rows per lane (256 rows per workgroup): 300 queries span two
// workgroups, 7 do not fill one. With one key every output row is that key's v row.
for (const [queries, keys] of [[300, 5], [7, 12], [9, 1]]) {
  gpuTest(`cross_attention ${queries} queries attend ${keys} keys, B=2 H=3 D=24`, async (ctx) => {
    const dims = { batch: 2, heads: 3, headDim: 24 };
    const width = dims.heads * dims.headDim;
    const qStride = width + 8;
    const qData = randn(4 + dims.batch * queries * qStride, 110 + queries);
    const kvData = randn(dims.batch * keys * 2 * width, 111 + keys);
    const qTensor = ctx.pool.upload(qData, [qData.length]);
    const kvTensor = ctx.pool.upload(kvData, [dims.batch, keys, 2 * width]);
    const q = { offset: 4, rowStride: qStride };
    const k = { offset: 0, rowStride: 2 * width };
    const v = { offset: width, rowStride: 2 * width };
    const op = crossAttention(
      ctx,
      { q: { tensor: qTensor, ...q }, tokens: queries },
      { k: { tensor: kvTensor, ...k }, v: { tensor: kvTensor, ...v }, tokens: keys },
      dims,
    );
    assert.deepEqual(op.out.shape, [dims.batch, queries, width]);
    const got = await runAndRead(ctx, op.dispatches, op.out);
    op.release();
    const want = crossAttentionRef(
      { q: { data: qData, ...q }, tokens: queries },
      { k: { data: kvData, ...k }, v: { data: kvData, ...v }, tokens: keys },
      dims,
    );
    assertClose(got, want, TOL, "cross attention");
    if (keys === 1) {
      for (let b = 0; b < dims.batch; b++) {
        const vRow = kvData.subarray((2 * b + 1) * width, (2 * b + 2) * width);
        const last = got.subarray(((b + 1) * queries - 1) * width, (b + 1) * queries * width);
        assertClose(last, vRow, TOL, `batch ${b}, last query against the one v row`);
      }
    }
    qTensor.release();
    kvTensor.release();
  });
}

/** Integers in [-range, range]: products and sums stay exact in fp32, as do scores at scale 1/8. */
function integers(size: number, seed: number, range: number): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: size }, () => Math.floor(next() * (2 * range + 1)) - range);
}

gpuTest(
  "flash_attention scores of +-200 (exp overflows and underflows fp32 without the running max)",
  async (ctx) => {
    const dims = { batch: 1, heads: 2, headDim: 64 };
    const tokens = 33;
    const width = dims.heads * dims.headDim;
    const data = integers(tokens * 3 * width, 60, 3);
    // Dimension 0 of every q and k is +-40: every score gains 40 * (+-40) / sqrt(64) = +-200 (head 0 +200,
    // head 1 -200), while the rest (std ~4) still spreads the weights over several keys.
    for (let n = 0; n < tokens; n++) {
      const row = n * 3 * width;
      data[row] = 40;
      data[row + width] = 40;
      data[row + dims.headDim] = 40;
      data[row + width + dims.headDim] = -40;
      for (let d = 0; d < width; d++) data[row + 2 * width + d] /= 3; // v within [-1, 1]
    }
    // Scores are exact (integers / 8), so the only errors are exp's and the weighted sums' roundings.
    const { got } = await checkFused(ctx, tokens, dims, data);
    assert.ok(got.every(Number.isFinite), "non-finite output");
  },
);

// Causal rows attend keys 0..n. 77 tokens at D=16 (CLIP's length): 4 rows per lane, one workgroup of 256
// rows; 130 tokens at D=64: 2 rows per lane, two workgroups of 128, so the second's key loop runs past the
// first's rows. Row 0 attends itself only: its output is its v row. Measured max |diff| 4.8e-7 in both.
for (const [tokens, headDim] of [[77, 16], [130, 64]]) {
  gpuTest(`flash_attention causal, ${tokens} tokens, B=2 H=3 D=${headDim}`, async (ctx) => {
    const dims = { batch: 2, heads: 3, headDim };
    const { got, data, unmasked } = await checkFused(ctx, tokens, dims, 80 + tokens, { causal: true });
    assertMasked(got, unmasked, "causal");
    const width = dims.heads * headDim;
    assertClose(got.subarray(0, width), data.subarray(2 * width, 3 * width), TOL, "row 0 against its v");
  });
}

// T5: no scale, a bias of std 2 (scores of std ~3.5 at D=8); and with the causal mask on top, at D=12.
// Measured max |diff| 7.2e-7 and 1.0e-6.
for (const [tokens, headDim, causal] of [[29, 8, false], [40, 12, true]] as const) {
  gpuTest(
    `flash_attention score bias [3, ${tokens}, ${tokens}], scale 1${
      causal ? ", causal" : ""
    }, B=2 D=${headDim}`,
    async (ctx) => {
      const dims = { batch: 2, heads: 3, headDim };
      const scoreBias = randn(dims.heads * tokens * tokens, 90 + tokens, 2);
      const options = { scale: 1, causal, scoreBias };
      const { got, unmasked } = await checkFused(ctx, tokens, dims, 91 + tokens, options);
      assertMasked(got, unmasked, "score bias");
    },
  );
}

gpuTest("attention_naive (bench baseline) matches the reference, 49 tokens, B=2 H=2 D=32", async (ctx) => {
  const dims = { batch: 2, heads: 2, headDim: 32 };
  const data = randn(2 * 49 * 3 * 64, 70);
  const stream = fusedQkv(ctx, data, 49, dims);
  const op = naiveAttention(ctx, stream.gpu, dims);
  const got = await runAndRead(ctx, op.dispatches, op.out);
  op.release();
  stream.tensor.release();
  assertClose(got, attentionRef(stream.host, dims), TOL, "naive attention");
});

gpuTest("flash_attention rejects bad dims, views and outputs naming the shapes and limits", (ctx) => {
  const dims = { batch: 2, heads: 2, headDim: 64 };
  const qkv = ctx.pool.tensor([2, 5, 384]);
  const wrongOut = ctx.pool.tensor([2, 5, 64]);
  const q = ctx.pool.tensor([2, 5, 128]);
  const u32 = ctx.pool.tensor([3840], "u32");
  const bias = ctx.pool.tensor([2, 5, 5]);
  const out = ctx.pool.tensor([2, 5, 128]);
  const biasInOut = new Tensor(out.buffer, [2, 5, 5], "f32", ctx.pool);
  const view = (offset: number, rowStride = 384) => ({ tensor: qkv, offset, rowStride });
  const good: QkvViews = { q: view(0), k: view(128), v: view(256), tokens: 5 };
  const before = ctx.pool.stats().buffersInUse;
  const rejects = (run: () => unknown, pattern: RegExp, kernel = "flash_attention") =>
    assert.throws(
      run,
      (e: unknown) =>
        e instanceof KernelError && e.message.startsWith(`${kernel}: `) && pattern.test(e.message),
    );
  const flash = (views: QkvViews, d: AttentionDims, options?: FlashAttentionOptions) => () =>
    flashAttention(ctx, views, d, options);

  rejects(flash(good, { ...dims, headDim: 516 }), /headDim 516.*multiple of 4 in 4\.\.512/);
  rejects(flash(good, { ...dims, headDim: 30 }), /headDim 30.*multiple of 4 in 4\.\.512/);
  rejects(flash(good, { ...dims, heads: 0 }), /heads 0.*positive integers/);
  rejects(flash(good, dims, { scale: NaN }), /scale NaN must be a finite number/);
  rejects(
    flash({ ...good, v: view(260) }, dims),
    /image v view \(offset 260, rowStride 384\) of f32 tensor \[2, 5, 384\]: 10 rows of heads\*headDim = 128 reach element 3844; allowed: .* <= 3840/,
  );
  rejects(flash({ ...good, k: view(130) }, dims), /image k view.*offset must be a multiple of 4/);
  // k of a model with 1 head (or head dim 32): its rows are narrower than heads*headDim.
  rejects(
    flash({ ...good, k: view(0, 64) }, dims),
    /image k view \(offset 0, rowStride 64\).*rowStride must be a multiple of 4 >= heads\*headDim = 128/,
  );
  rejects(flash({ ...good, tokens: 0 }, dims), /image tokens 0 must be a positive integer/);
  rejects(
    flash(good, dims, { text: { ...good, tokens: 6 } }),
    /text q view \(offset 0, rowStride 384\) of f32 tensor \[2, 5, 384\]: 12 rows of heads\*headDim = 128 reach element 4352; allowed: .* <= 3840/,
  );
  rejects(flash(good, dims, { out: wrongOut }), /out \[2, 5, 64\] f32 must be f32 \[2, 5, 128\]/);
  rejects(
    flash({ ...good, q: { tensor: q, offset: 0, rowStride: 128 } }, dims, { out: q }),
    /out shares the buffer of q/,
  );
  rejects(flash({ ...good, q: { tensor: u32, offset: 0, rowStride: 384 } }, dims), /must be f32/);
  rejects(
    () => naiveAttention(ctx, good, { ...dims, headDim: 516 }),
    /headDim 516.*a multiple of 4 in 4..512/,
    "attention_naive",
  );
  rejects(
    flash(good, dims, { tiling: { rowsPerLane: 0, workgroupSize: 64 } }),
    /tiling rowsPerLane 0 must be an integer in 1\.\.8/,
  );
  rejects(
    flash(good, dims, { text: good, causal: true }),
    /causal and scoreBias apply to one stream: not with a joint text stream/,
  );
  rejects(
    flash(good, dims, { scoreBias: bias.view([2, 25]) }),
    /scoreBias \[2, 25\] f32 must be f32 \[2, 5, 5\] \[heads, N, N\]/,
  );
  rejects(flash(good, dims, { scoreBias: u32.view([2, 5, 384]) }), /scoreBias \[2, 5, 384\] u32 must be f32/);
  rejects(flash(good, dims, { scoreBias: biasInOut, out }), /out shares the buffer of scoreBias/);
  const cross = (keys: number, o?: FlashAttentionOptions) => () =>
    crossAttention(ctx, { q: view(0), tokens: 5 }, { k: view(128), v: view(256), tokens: keys }, dims, o);
  rejects(cross(6), /key k view \(offset 128, rowStride 384\).*12 rows .* reach element 4480/);
  rejects(cross(3, { out: wrongOut }), /out \[2, 5, 64\] f32 must be f32 \[2, 5, 128\] \[batch, Nq, /);
  rejects(
    () =>
      crossAttention(
        ctx,
        { q: { tensor: q, offset: 0, rowStride: 128 }, tokens: 5 },
        {
          k: view(128),
          v: view(256),
          tokens: 3,
        },
        dims,
        { out: q },
      ),
    /out shares the buffer of q/,
  );
  assert.equal(ctx.pool.stats().buffersInUse, before, "a rejected call must not allocate");
  for (const t of [qkv, wrongOut, q, u32, bias, out]) t.release();
});
