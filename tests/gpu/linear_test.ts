import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { KernelError } from "../../src/gpu/kernel.ts";
import { Tensor } from "../../src/gpu/tensor.ts";
import { type Activation, linear, LINEAR_TILINGS, type LinearOptions } from "../../src/ops/linear.ts";
import * as ref from "../../src/ref/linear.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";
import { encodeHalf } from "../support/half.ts";

// Unit-normal x and W: an output sums K products of size ~1, so partial sums grow to ~sqrt(K) (outputs up to
// ~70 at K = 300) and each fp32 addition rounds by <= 2^-24 of one. K additions (K/4 running sums of vec4
// dots when K % 4 == 0) add up like a random walk to ~K * 2^-24 ~ 2e-5 at K = 300, 3e-5 at K = 512; measured
// max |diff| 2.3e-5 (K = 300), 5.0e-5 (K = 299, scalar loads), 5.7e-5 (K = 511). The reference rounds once
// from float64. atol 1e-4 alone covers the worst of those twice over, rtol 1e-4*|ref| adds room at large
// outputs; a dropped term, a wrong gate or a wrong bias is off by >= 0.1.
const TOL = { atol: 1e-4, rtol: 1e-4 };

interface Case {
  /** x shape [..., K]; W is [N, K]. */
  x: number[];
  n: number;
  bias?: boolean;
  activation?: Activation;
}

function k(shape: readonly number[]): number {
  return shape[shape.length - 1];
}

function count(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

async function runLinear(
  ctx: GpuContext,
  x: Float32Array,
  xShape: number[],
  w: Float32Array,
  wShape: number[],
  options: Omit<LinearOptions, "bias"> & { bias?: Float32Array } = {},
): Promise<Float32Array> {
  const tx = ctx.pool.upload(x, xShape);
  const tw = ctx.pool.upload(w, wShape);
  const tb = options.bias && ctx.pool.upload(options.bias, [options.bias.length]);
  const op = linear(ctx, tx, tw, { ...options, bias: tb });
  const got = await runAndRead(ctx, op.dispatches, op.out);
  op.release();
  for (const t of [tx, tw, tb]) t?.release();
  return got;
}

const CASES: Case[] = [
  { x: [1, 16], n: 16 }, // M = 1: the thin tiling
  { x: [3, 5], n: 7, bias: true }, // smaller than every tile, K odd: scalar K loads
  { x: [100, 300], n: 200, bias: true }, // M, N not multiples of the 8 x 128 tile; K % 4 == 0: vec4 loads
  { x: [37, 30], n: 130 }, // K % 4 == 2, N one past a tile
  { x: [2, 49, 64], n: 96, bias: true }, // leading dims fold into rows
  { x: [37, 64], n: 70, bias: true, activation: "gelu_tanh" },
  { x: [37, 64], n: 70, bias: true, activation: "silu" },
  { x: [2, 49, 288], n: 64, bias: true, activation: "relu" }, // the CNN classifier's conv2 after im2col
  { x: [5, 21], n: 33, activation: "gelu_tanh" }, // thin tiling, scalar K
  { x: [2, 77, 36], n: 101, bias: true, activation: "quick_gelu" }, // CLIP's fc1 in miniature
  { x: [37, 33], n: 75, bias: true, activation: "gelu_erf" },
];

for (const c of CASES) {
  const label = `${c.bias ? "bias" : "no bias"}${c.activation ? `, ${c.activation}` : ""}`;
  gpuTest(`linear x [${c.x}] W [${c.n}, ${k(c.x)}] ${label} matches reference`, async (ctx) => {
    const depth = k(c.x);
    const rows = count(c.x) / depth;
    const x = randn(count(c.x), 1 + rows);
    const w = randn(c.n * depth, 2 + depth);
    const bias = c.bias ? randn(c.n, 3) : undefined;
    const got = await runLinear(ctx, x, c.x, w, [c.n, depth], { bias, activation: c.activation });
    const want = ref.linear(x, w, { rows, cols: c.n, depth }, { bias, activation: c.activation });
    assertClose(got, want, TOL, "linear");
  });
}

// Each activation alone (x [241, 1] on a grid over -12..12, W = [[1]]), where a dot product adds no error:
// f32 exp, tanh and erfc (fractional error < 1.2e-7) against float64, a few ulp of outputs |.| <= 12:
// measured max |diff| 9.5e-7 (silu and quick_gelu near 12), 4.8e-7 for gelu_erf.
gpuTest("linear activations on a grid of -12..12 match their float64 definitions", async (ctx) => {
  const x = Float32Array.from({ length: 241 }, (_, i) => -12 + i / 10);
  for (const activation of ["gelu_tanh", "silu", "relu", "quick_gelu", "gelu_erf"] as const) {
    const got = await runLinear(ctx, x, [241, 1], Float32Array.of(1), [1, 1], { activation });
    const want = x.map((v) => ref.activate(v, activation));
    assertClose(got, want, { atol: 1e-6, rtol: 1e-6 }, activation);
  }
});

gpuTest("linear batched W [3, 40, 36] and [2, 24, 9] matches reference per batch entry", async (ctx) => {
  for (const [batch, m, n, depth] of [[3, 20, 40, 36], [2, 11, 24, 9]]) {
    const x = randn(batch * m * depth, 4);
    const w = randn(batch * n * depth, 5);
    const got = await runLinear(ctx, x, [batch, m, depth], w, [batch, n, depth], { activation: "silu" });
    const want = ref.linear(x, w, { rows: m, cols: n, depth, batch }, { activation: "silu" });
    assertClose(got, want, TOL, `batched linear [${batch}, ${m}, ${depth}] x [${batch}, ${n}, ${depth}]`);
  }
});

gpuTest(
  "linear gated residual: out += gate[sample] * gelu(x W^T + b), in place, gate a view of mod",
  async (ctx) => {
    const [batch, tokens, depth, n, chunks, gateChunk] = [2, 49, 64, 96, 6, 2];
    const x = randn(batch * tokens * depth, 6);
    const w = randn(n * depth, 7);
    const bias = randn(n, 8);
    const residual = randn(batch * tokens * n, 9);
    const mod = randn(batch * chunks * n, 10);
    const gate = { offset: gateChunk * n, stride: chunks * n, rowsPerGate: tokens };
    const tx = ctx.pool.upload(x, [batch, tokens, depth]);
    const tw = ctx.pool.upload(w, [n, depth]);
    const tb = ctx.pool.upload(bias, [n]);
    const tout = ctx.pool.upload(residual, [batch, tokens, n]);
    const tmod = ctx.pool.upload(mod, [batch, chunks * n]);
    const op = linear(ctx, tx, tw, {
      bias: tb,
      activation: "gelu_tanh",
      out: { tensor: tout },
      gate: { tensor: tmod, ...gate },
    });
    assert.equal(op.out, tout);
    const got = await runAndRead(ctx, op.dispatches, tout);
    const want = ref.linear(x, w, { rows: batch * tokens, cols: n, depth }, {
      bias,
      activation: "gelu_tanh",
      accumulateOnto: residual,
      gate: { values: mod, ...gate },
    });
    assertClose(got, want, TOL, "gated residual");
    op.release();
    assert.equal(tout.released, false, "release() must leave options.out alone");
    for (const t of [tx, tw, tb, tout, tmod]) t.release();
  },
);

gpuTest(
  "linear times a tensor: gelu_tanh(x W^T) * y (T5's gated GELU) into a view, then accumulated",
  async (ctx) => {
    const [rows, depth, n, width] = [29, 37, 53, 60];
    const x = randn(rows * depth, 19);
    const w = randn(n * depth, 20);
    const y = randn(rows * n, 21);
    const before = randn(rows * width, 22);
    const tx = ctx.pool.upload(x, [rows, depth]);
    const tw = ctx.pool.upload(w, [n, depth]);
    const ty = ctx.pool.upload(y, [rows, n]);
    const tout = ctx.pool.upload(before, [rows, width]);
    // The reference's gate of one vector per row is the elementwise product.
    const product = { values: y, offset: 0, stride: n, rowsPerGate: 1 };
    const dims = { rows, cols: n, depth };
    const plain = linear(ctx, tx, tw, { activation: "gelu_tanh", multiply: ty });
    const got = await runAndRead(ctx, plain.dispatches, plain.out);
    assertClose(got, ref.linear(x, w, dims, { activation: "gelu_tanh", gate: product }), TOL, "multiplied");
    plain.release();
    // Accumulated into columns 0..n of a wider tensor: rowStride does not move the product's rows.
    const onto = linear(ctx, tx, tw, {
      activation: "gelu_tanh",
      multiply: ty,
      out: { tensor: tout, rowStride: width },
      accumulate: true,
    });
    const sum = await runAndRead(ctx, onto.dispatches, tout);
    const slice = Float32Array.from(
      { length: rows * n },
      (_, i) => before[Math.floor(i / n) * width + i % n],
    );
    const accumulated = ref.linear(x, w, dims, {
      activation: "gelu_tanh",
      gate: product,
      accumulateOnto: slice,
    });
    const want = before.slice();
    for (let r = 0; r < rows; r++) want.set(accumulated.subarray(r * n, (r + 1) * n), r * width);
    assertClose(sum, want, TOL, "multiplied and accumulated");
    onto.release();
    for (const t of [tx, tw, ty, tout]) t.release();
  },
);

// Every tiling, whichever adapter runs the tests: the GPU one is otherwise only exercised on real GPUs.
for (const [name, tiling] of Object.entries(LINEAR_TILINGS)) {
  gpuTest(
    `linear ${name} tiling, batched W, gated silu epilogue, K = 36 and 18 matches reference`,
    async (ctx) => {
      const [batch, tokens, n] = [2, 23, 45];
      for (const depth of [36, 18]) {
        const x = randn(batch * tokens * depth, 14);
        const w = randn(batch * n * depth, 15);
        const bias = randn(n, 16);
        const residual = randn(batch * tokens * n, 17);
        const mod = randn(batch * 3 * n, 18);
        const gate = { offset: n, stride: 3 * n, rowsPerGate: tokens };
        const tout = ctx.pool.upload(residual, [batch, tokens, n]);
        const tmod = ctx.pool.upload(mod, [batch, 3 * n]);
        const got = await runLinear(ctx, x, [batch, tokens, depth], w, [batch, n, depth], {
          bias,
          activation: "silu",
          out: { tensor: tout },
          gate: { tensor: tmod, ...gate },
          tiling,
        });
        const want = ref.linear(x, w, { rows: tokens, cols: n, depth, batch }, {
          bias,
          activation: "silu",
          accumulateOnto: residual,
          gate: { values: mod, ...gate },
        });
        assertClose(got, want, TOL, `${name} tiling, K = ${depth}`);
        tout.release();
        tmod.release();
      }
    },
  );
}

gpuTest(
  "linear accumulates without a gate into a column slice of a wider tensor, leaving the rest",
  async (ctx) => {
    const [rows, depth, n, width, offset] = [19, 24, 40, 101, 30];
    const x = randn(rows * depth, 11);
    const w = randn(n * depth, 12);
    const before = randn(rows * width, 13);
    const tx = ctx.pool.upload(x, [rows, depth]);
    const tw = ctx.pool.upload(w, [n, depth]);
    const tout = ctx.pool.upload(before, [rows, width]);
    const op = linear(ctx, tx, tw, { out: { tensor: tout, offset, rowStride: width }, accumulate: true });
    const got = await runAndRead(ctx, op.dispatches, tout);
    const slice = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) {
      slice.set(
        before.subarray(r * width + offset, r * width + offset + n),
        r * n,
      );
    }
    const product = ref.linear(x, w, { rows, cols: n, depth }, { accumulateOnto: slice });
    const want = before.slice();
    for (let r = 0; r < rows; r++) want.set(product.subarray(r * n, (r + 1) * n), r * width + offset);
    assertClose(got, want, TOL, "accumulated slice (outside it: untouched, bit for bit within atol)");
    op.release();
    for (const t of [tx, tw, tout]) t.release();
  },
);

gpuTest("linear rejects bad shapes, views and sizes with a KernelError before allocating", (ctx) => {
  const limit = ctx.gpu.info.limits.maxStorageBufferBindingSize;
  const x = ctx.pool.tensor([10, 12]);
  const w = ctx.pool.tensor([8, 12]);
  const wrongK = ctx.pool.tensor([8, 13]);
  const batchedW = ctx.pool.tensor([3, 8, 12]);
  const bias = ctx.pool.tensor([7]);
  const mod = ctx.pool.tensor([2, 16]);
  const out = ctx.pool.tensor([10, 8]);
  const product = ctx.pool.tensor([10, 8]);
  // [wideRows, 4] x [8192, 4]^T fits its inputs in a few hundred KB but its output exceeds the limit.
  const wideRows = Math.floor(limit / (8192 * 4)) + 1;
  const xWide = ctx.pool.tensor([wideRows, 4]);
  const wWide = ctx.pool.tensor([8192, 4]);
  // Claims more bytes than one storage binding holds; its small buffer is never bound.
  const bigRows = Math.floor(limit / (12 * 4)) + 1;
  const huge = new Tensor(x.buffer, [bigRows, 12], "f32", ctx.pool);
  // More row tiles (of <= 32 rows in every tiling) than one grid dimension holds; also never bound.
  const maxGroups = ctx.gpu.info.limits.maxComputeWorkgroupsPerDimension;
  const tall = new Tensor(x.buffer, [32 * maxGroups + 1, 12], "f32", ctx.pool);
  const stats = ctx.pool.stats();
  const kernels = ctx.kernels.size;
  const rejects = (input: Tensor, weight: Tensor, options: LinearOptions, pattern: RegExp) =>
    assert.throws(
      () => linear(ctx, input, weight, options),
      (e) => e instanceof KernelError && e.message.startsWith("linear: ") && pattern.test(e.message),
    );
  rejects(x, wrongK, {}, /x \[10, 12\], W \[8, 13\]: K of x \(12\) differs from K of W \(13\)/);
  rejects(x, batchedW, {}, /batched W \[batch, N, K\] needs x \[batch, M, K\] of equal batch/);
  rejects(x, w, { bias }, /bias \[7\] must be \[N\] = \[8\]/);
  rejects(
    x,
    w,
    { out: { tensor: out }, gate: { tensor: mod, offset: 9, stride: 16, rowsPerGate: 5 } },
    /gate view \(offset 9, stride 16, rowsPerGate 5\) of \[2, 16\] reaches element 32 \(2 gate vectors of N = 8 for 10 rows\), past its 32 elements/,
  );
  rejects(
    x,
    w,
    { out: { tensor: out }, gate: { tensor: mod, offset: 0, stride: 16, rowsPerGate: 0 } },
    /rowsPerGate 0\) needs integers, offset and stride >= 0, rowsPerGate >= 1/,
  );
  rejects(x, w, { accumulate: true }, /accumulate and gate need options\.out/);
  rejects(
    x,
    w,
    { multiply: bias },
    /multiply \[7\] must hold the 10 x 8 outputs, and comes without a gate/,
  );
  rejects(
    x,
    w,
    { multiply: product, out: { tensor: out }, gate: { tensor: mod, offset: 0, stride: 16, rowsPerGate: 5 } },
    /multiply \[10, 8\] must hold the 10 x 8 outputs, and comes without a gate/,
  );
  rejects(x, w, { multiply: out, out: { tensor: out } }, /multiply shares out's buffer/);
  rejects(
    x,
    w,
    { out: { tensor: out, rowStride: 7 } },
    /rowStride 7\) needs an offset >= 0 and rowStride >= N = 8/,
  );
  rejects(
    x,
    w,
    { out: { tensor: out, offset: 1 } },
    /out view \(offset 1, rowStride 8\) of \[10, 8\] reaches element 80 \(10 rows of N = 8\), past its 80 elements/,
  );
  rejects(x, w, { out: { tensor: x } }, /x shares out's buffer/);
  rejects(
    huge,
    w,
    {},
    new RegExp(
      `x \\[${bigRows}, 12\\], W \\[8, 12\\]: tensor \\[${bigRows}, 12\\] holds ${bigRows * 48} bytes, ` +
        `over the device's maxStorageBufferBindingSize ${limit}`,
    ),
  );
  rejects(
    xWide,
    wWide,
    {},
    new RegExp(`tensor \\[${wideRows}, 8192\\] holds ${wideRows * 8192 * 4} bytes, over .* ${limit}`),
  );
  rejects(
    tall,
    w,
    {},
    new RegExp(`workgroups of \\d+x\\d+ outputs .* exceed maxComputeWorkgroupsPerDimension ${maxGroups}`),
  );
  assert.deepEqual(ctx.pool.stats(), stats, "nothing allocated for rejected input");
  assert.equal(ctx.kernels.size, kernels, "no pipeline compiled for rejected input");
  // The gate view one element shorter than the rejected one is accepted.
  const ok = linear(ctx, x, w, {
    out: { tensor: out },
    gate: { tensor: mod, offset: 8, stride: 16, rowsPerGate: 5 },
  });
  ok.release();
  for (const t of [x, w, wrongK, batchedW, bias, mod, out, product, xWide, wWide]) t.release();
});

for (const dtype of ["f16", "bf16"] as const) {
  for (const [m, kk, n] of [[5, 64, 24], [9, 30, 11]]) {
    gpuTest(`linear reads ${dtype} weights as stored: [${m},${kk}]x[${n},${kk}]`, async (ctx) => {
      const x = randn(m * kk, 11);
      const { bytes, rounded } = encodeHalf(randn(n * kk, 12), dtype);
      const tx = ctx.pool.upload(x, [m, kk]);
      const tw = ctx.pool.uploadBytes(bytes, [n, kk], dtype);
      const op = linear(ctx, tx, tw);
      const got = await runAndRead(ctx, op.dispatches, op.out);
      op.release();
      tx.release();
      tw.release();
      assertClose(got, ref.linear(x, rounded, { rows: m, cols: n, depth: kk }), TOL);
    });
  }
}
