// Attention at 1024 tokens x head dim 64 (B=1, H=4, q/k/v read from a fused qkv): flash attention at the
// default tiling and at 4 rows per lane (faster on llvmpipe, slower to JIT) against the naive three-kernel
// attention over a materialised [B, H, N, N] score tensor; then FLUX-style joint text + image attention at
// head dim 128. GFLOP/s count 4*N*N*D per (batch, head): q k^T and P v, 2 flops per multiply-add.
import type { GpuContext } from "../../gpu/context.ts";
import { submitDispatches } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import {
  type Attention,
  type AttentionDims,
  flashAttention,
  flashAttentionTiling,
  type QkvViews,
} from "../../ops/attention.ts";
import { naiveAttention } from "../../ops/attention_naive.ts";
import { flashAttention as attentionRef, type HostQkv } from "../../ref/attention.ts";
import { benchInput, type BenchRow, type BenchSuite, gflops, maxAbsDiff, timeCommands } from "./harness.ts";

interface Qkv {
  gpu: QkvViews;
  host: HostQkv;
  tensor: Tensor;
}

/** A fused qkv [B, N, 3*H*D] and its q, k, v views. */
function fusedQkv(ctx: GpuContext, tokens: number, dims: AttentionDims, seed: number): Qkv {
  const width = dims.heads * dims.headDim;
  const data = benchInput(dims.batch * tokens * 3 * width, seed);
  const tensor = ctx.pool.upload(data, [dims.batch, tokens, 3 * width]);
  const at = (i: number) => ({ offset: i * width, rowStride: 3 * width });
  return {
    gpu: { q: { tensor, ...at(0) }, k: { tensor, ...at(1) }, v: { tensor, ...at(2) }, tokens },
    host: { q: { data, ...at(0) }, k: { data, ...at(1) }, v: { data, ...at(2) }, tokens },
    tensor,
  };
}

/** Checks `op` against `want` once, times it and reports; returns its milliseconds. */
async function measure(
  ctx: GpuContext,
  report: (row: BenchRow) => void,
  row: { kernel: string; shape: string; flops: number; note: (ms: number) => string },
  op: Attention,
  want: Float32Array,
): Promise<number> {
  await ctx.kernels.ready();
  submitDispatches(ctx.gpu, op.dispatches);
  const got = await readFloats(ctx.gpu, op.out);
  const maxAbsErr = maxAbsDiff(got, want);
  const ms = await timeCommands(ctx, op.dispatches);
  report({
    kernel: row.kernel,
    shape: row.shape,
    ms,
    gflops: gflops(row.flops, ms),
    maxAbsErr,
    note: row.note(ms),
  });
  op.release();
  return ms;
}

async function selfAttention(ctx: GpuContext, report: (row: BenchRow) => void): Promise<void> {
  const dims = { batch: 1, heads: 4, headDim: 64 };
  const tokens = 1024;
  const qkv = fusedQkv(ctx, tokens, dims, 1);
  const want = attentionRef(qkv.host, dims);
  const shape = `B${dims.batch} N${tokens} H${dims.heads} D${dims.headDim}`;
  const flops = 4 * tokens * tokens * dims.headDim * dims.batch * dims.heads;
  const naiveMs = await measure(
    ctx,
    report,
    { kernel: "attention_naive", shape, flops, note: () => "3 kernels, [B,H,N,N] scores in memory" },
    naiveAttention(ctx, qkv.gpu, dims),
    want,
  );
  const versusNaive = (ms: number) => `${(naiveMs / ms).toFixed(1)}x faster than attention_naive`;
  const tiling = flashAttentionTiling(dims.headDim);
  for (const rowsPerLane of [tiling.rowsPerLane, 4]) {
    const label = rowsPerLane === tiling.rowsPerLane ? "default" : "more JIT time";
    await measure(
      ctx,
      report,
      {
        kernel: "flash_attention",
        shape,
        flops,
        note: (ms) => `${rowsPerLane} rows/lane (${label}), ${versusNaive(ms)}`,
      },
      flashAttention(ctx, qkv.gpu, dims, { tiling: { ...tiling, rowsPerLane } }),
      want,
    );
  }
  qkv.tensor.release();
}

/** FLUX dual stream: 512 text tokens and a 32x32 latent grid, head dim 128 (2 of FLUX's 24 heads). */
async function jointAttention(ctx: GpuContext, report: (row: BenchRow) => void): Promise<void> {
  const dims = { batch: 1, heads: 2, headDim: 128 };
  const [textTokens, imageTokens] = [512, 1024];
  const text = fusedQkv(ctx, textTokens, dims, 2);
  const image = fusedQkv(ctx, imageTokens, dims, 3);
  const want = attentionRef(image.host, dims, { text: text.host });
  const total = textTokens + imageTokens;
  await measure(
    ctx,
    report,
    {
      kernel: "flash_attention joint",
      shape: `B1 Nt${textTokens}+Ni${imageTokens} H${dims.heads} D${dims.headDim}`,
      flops: 4 * total * total * dims.headDim * dims.batch * dims.heads,
      note: () => `${flashAttentionTiling(dims.headDim).rowsPerLane} rows/lane, text and image views`,
    },
    flashAttention(ctx, image.gpu, dims, { text: text.gpu }),
    want,
  );
  text.tensor.release();
  image.tensor.release();
}

export const attentionBench: BenchSuite = {
  name: "attention",
  async run(ctx, report) {
    await selfAttention(ctx, report);
    await jointAttention(ctx, report);
  },
};
