// Row norms and adaLN elementwise ops at DiT / FLUX sizes (hidden 3072, 24 heads of 128): each cooperative
// norm against the naive one-invocation-per-row split of the same kernel (lanes 1), the fused
// LayerNorm + modulate against LayerNorm then modulate. All are memory-bound: `note` gives GB/s of the
// compulsory traffic (every input read once, every output written once), the same count for both variants.
import type { GpuContext } from "../../gpu/context.ts";
import { type Dispatch, submitDispatches } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { gatedResidual, modulate, silu } from "../../ops/modulate.ts";
import { layerNorm, layerNormModulate, rmsNormInPlace } from "../../ops/norm.ts";
import * as modulateRef from "../../ref/modulate.ts";
import * as normRef from "../../ref/norm.ts";
import { benchInput, type BenchRow, type BenchSuite, maxAbsDiff, timeCommands } from "./harness.ts";

interface Variant {
  kernel: string;
  dispatches: Dispatch[];
  out: Tensor;
  /** Upload fresh inputs first: in-place variants overwrite theirs while timed. */
  reset?: () => void;
}

/**
 * Checks each variant once against `want`, then times it; rows after the first give their slowdown
 * relative to it. `bytes` is the compulsory traffic of one pass.
 */
async function compare(
  ctx: GpuContext,
  report: (row: BenchRow) => void,
  shape: string,
  bytes: number,
  want: Float32Array,
  variants: Variant[],
): Promise<void> {
  let first = 0;
  for (const v of variants) {
    v.reset?.();
    await ctx.kernels.ready();
    submitDispatches(ctx.gpu, v.dispatches);
    const got = await readFloats(ctx.gpu, v.out);
    const err = maxAbsDiff(got, want);
    const ms = await timeCommands(ctx, v.dispatches);
    first ||= ms;
    const relative = ms === first ? "" : `, ${(ms / first).toFixed(2)}x the time of ${variants[0].kernel}`;
    report({
      kernel: v.kernel,
      shape,
      ms,
      gflops: null,
      maxAbsErr: err,
      note: `${(bytes / (ms * 1e6)).toFixed(2)} GB/s${relative}`,
    });
  }
}

async function layerNormRows(ctx: GpuContext, report: (row: BenchRow) => void): Promise<void> {
  for (const [rows, channels] of [[1024, 3072], [8192, 128]]) {
    const x = benchInput(rows * channels, 1);
    const weight = benchInput(channels, 2);
    const bias = benchInput(channels, 3);
    const [tx, tw, tb] = [
      ctx.pool.upload(x, [rows, channels]),
      ctx.pool.upload(weight, [channels]),
      ctx.pool.upload(bias, [channels]),
    ];
    const fast = layerNorm(ctx, tx, { weight: tw, bias: tb });
    const naive = layerNorm(ctx, tx, { weight: tw, bias: tb, lanes: 1 });
    await compare(
      ctx,
      report,
      `[${rows},${channels}] affine`,
      2 * x.byteLength,
      normRef.layerNorm(x, channels, { weight, bias }),
      [
        { kernel: "layer_norm", ...fast },
        { kernel: "layer_norm naive", ...naive },
      ],
    );
    for (const t of [fast, naive, tx, tw, tb]) t.release();
  }
}

/** FLUX qk-norm: q and k of qkv [1, 1024, 3*24*128] normalised in place. */
async function qkNormRows(ctx: GpuContext, report: (row: BenchRow) => void): Promise<void> {
  const [tokens, heads, headDim] = [1024, 24, 128];
  const width = 3 * heads * headDim;
  const qkv = benchInput(tokens * width, 4);
  const weight = benchInput(headDim, 5);
  const tqkv = ctx.pool.upload(qkv, [1, tokens, width]);
  const tw = ctx.pool.upload(weight, [headDim]);
  const dims = { tokens, heads, headDim };
  const views = [0, heads * headDim].map((offset) => ({ tensor: tqkv, offset, rowStride: width }));
  let want: Float32Array = qkv;
  for (const { offset } of views) {
    want = normRef.rmsNormInPlace(want, { offset, rowStride: width }, dims, { weight });
  }
  const variant = (kernel: string, lanes?: number): Variant & { release(): void } => {
    const ops = views.map((view) => rmsNormInPlace(ctx, view, dims, { weight: tw, lanes }));
    return {
      kernel,
      dispatches: ops.flatMap((op) => op.dispatches),
      out: tqkv,
      reset: () => ctx.gpu.device.queue.writeBuffer(tqkv.buffer, 0, qkv),
      release: () => ops.forEach((op) => op.release()),
    };
  };
  const variants = [variant("rms_norm_in_place q,k"), variant("rms_norm_in_place q,k naive", 1)];
  const bytes = 2 * 2 * tokens * heads * headDim * 4; // q and k, read and written
  await compare(ctx, report, `qkv [1,${tokens},3*${heads}*${headDim}]`, bytes, want, variants);
  for (const t of [...variants, tqkv, tw]) t.release();
}

/** DiT block prologue: fused adaLN LayerNorm + modulate against the two-pass LayerNorm, then modulate. */
async function adaLnRows(ctx: GpuContext, report: (row: BenchRow) => void): Promise<void> {
  const [batch, tokens, channels, chunks] = [2, 512, 3072, 6];
  const shape = [batch, tokens, channels] as const;
  const x = benchInput(batch * tokens * channels, 6);
  const mod = benchInput(batch * chunks * channels, 7);
  const tx = ctx.pool.upload(x, [...shape]);
  const tm = ctx.pool.upload(mod, [batch, chunks * channels]);
  const chunkSet = { shift: 0, scale: 1 };
  const fused = layerNormModulate(ctx, tx, tm, chunkSet);
  const norm = layerNorm(ctx, tx);
  const then = modulate(ctx, norm.out, tm, { ...chunkSet, inPlace: true });
  const want = normRef.layerNormModulate(x, shape, mod, chunkSet);
  await compare(ctx, report, `x [${shape}] mod k=${chunks}`, 2 * x.byteLength, want, [
    { kernel: "layer_norm_modulate", ...fused },
    {
      kernel: "layer_norm, modulate unfused",
      dispatches: [...norm.dispatches, ...then.dispatches],
      out: norm.out,
    },
  ]);

  // Elementwise ops alone on the same tensors; gated_residual updates x, so it goes last.
  const y = benchInput(x.length, 8);
  const ty = ctx.pool.upload(y, [...shape]);
  const modulated = modulate(ctx, tx, tm, chunkSet);
  const activated = silu(ctx, tx);
  const gated = gatedResidual(ctx, tx, ty, tm, { gate: 2 });
  await compare(
    ctx,
    report,
    `x [${shape}]`,
    2 * x.byteLength,
    modulateRef.modulate(x, shape, mod, chunkSet),
    [
      { kernel: "modulate", ...modulated },
    ],
  );
  await compare(ctx, report, `x [${shape}]`, 2 * x.byteLength, modulateRef.silu(x), [{
    kernel: "silu",
    ...activated,
  }]);
  await compare(
    ctx,
    report,
    `x [${shape}]`,
    3 * x.byteLength,
    modulateRef.gatedResidual(x, y, shape, mod, { gate: 2 }),
    [
      { kernel: "gated_residual", ...gated, reset: () => ctx.gpu.device.queue.writeBuffer(tx.buffer, 0, x) },
    ],
  );
  for (const t of [fused, norm, then, modulated, activated, gated, tx, tm, ty]) t.release();
}

export const normBench: BenchSuite = {
  name: "norm",
  async run(ctx, report) {
    await layerNormRows(ctx, report);
    await qkNormRows(ctx, report);
    await adaLnRows(ctx, report);
  },
};
