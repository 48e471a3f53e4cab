// Multi-head softmax attention out = softmax(q k^T * scale) v over strided q/k/v views, so q, k and v are read
// straight out of a fused qkv projection. flashAttention (shaders/flash_attention.wgsl + the generated tile
// of src/ops/flash_attention_wgsl.ts) never materialises the [N, N] scores and optionally attends a text
// stream and an image stream jointly (FLUX dual stream), or masks one stream (causal, an additive score
// bias); naiveAttention (shaders/attention_naive.wgsl) is the three-kernel baseline of the bench.
import type { GpuContext } from "../gpu/context.ts";
import {
  bindKernel,
  type Dispatch,
  disposeDispatches,
  groups,
  KernelError,
  packUniform,
} from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { flashAttentionShader, type FlashAttentionTiling } from "./flash_attention_wgsl.ts";
import { checkRowView, type RowView } from "./row_view.ts";

const FLASH = "flash_attention";
const NAIVE = "attention_naive";
const QKV_BINDINGS = ["read", "read", "read"] as const;
/** Text q, k, v; image q, k, v; out; score bias; uniform. */
const FLASH_BINDINGS = [...QKV_BINDINGS, ...QKV_BINDINGS, "read_write", "read", "uniform"] as const;
const NAIVE_BINDINGS = ["read", "read", "read", "read_write", "read_write", "uniform"] as const;
/** Naive kernels: 16x16 invocations per workgroup (scores and weighted sums), 256 rows (softmax). */
const NAIVE_WG = 16;

/** A lane holds q and the output accumulator of its rows: 2 * headDim floats per row in registers. */
export const MAX_HEAD_DIM = 512;
/** q and accumulators of all rows of a lane: 2 * rowsPerLane * headDim <= 256 floats, the most GPUs keep. */
const ROW_FLOATS_PER_LANE = 128;
/** More rows per lane multiply llvmpipe's JIT time (generated code grows with rows x head dim). */
const MAX_ROWS_PER_LANE = 4;
const WORKGROUP_SIZE = 64;

/**
 * As many query rows per lane as the register budget allows: 4 for headDim <= 32, 2 for 64, 1 for 72..128.
 * On llvmpipe every k/v load is a per-lane scalar loop that all rows of the lane share, so speed grows with
 * rows per lane (1024 tokens x headDim 64: 2.5, 4.1, 6.7, 9.7 GFLOP/s with 1, 2, 4, 8 rows) and so does the
 * pipeline's JIT time, paid at every start-up (0.5, 1.1, 2.7 s of CPU with 1, 2, 4 rows; 1.6 s for 128 x 1).
 */
export function flashAttentionTiling(headDim: number): FlashAttentionTiling {
  const rowsPerLane = Math.max(1, Math.min(MAX_ROWS_PER_LANE, Math.floor(ROW_FLOATS_PER_LANE / headDim)));
  return { rowsPerLane, workgroupSize: WORKGROUP_SIZE };
}

export interface AttentionDims {
  batch: number;
  heads: number;
  /** A multiple of 4 (vec4 loads) in 4..MAX_HEAD_DIM. */
  headDim: number;
}

/**
 * One stream of tokens: q, k and v each a view (element (b, n, h, d) at offset + (b*tokens + n)*rowStride +
 * h*headDim + d), e.g. of a fused qkv [B, N, 3*H*D] at offsets 0, H*D, 2*H*D with rowStride 3*H*D.
 */
export interface QkvViews {
  q: RowView;
  k: RowView;
  v: RowView;
  tokens: number;
}

export interface FlashAttentionOptions {
  /** Default 1 / sqrt(headDim). */
  scale?: number;
  /** Joint attention: these tokens come before the image tokens in the attended sequence and the output. */
  text?: QkvViews;
  /** Row n attends keys j <= n only (CLIP's text encoder). Not with `text`. */
  causal?: boolean;
  /**
   * f32 [heads, N, N] added to the scaled scores before the softmax, the same for every batch entry (T5's
   * relative position bias). Not with `text`.
   */
  scoreBias?: Tensor;
  /** Write into this [batch, Nt + Ni, heads * headDim] tensor instead of a new one. */
  out?: Tensor;
  /** Overrides the default tiling; for benchmarks. */
  tiling?: FlashAttentionTiling;
}

export interface Attention {
  dispatches: Dispatch[];
  /** [batch, Nt + Ni, heads * headDim]: text rows first, then image rows. */
  out: Tensor;
  /** Releases the uniforms and what the op allocated (out unless given, naive scores); never the inputs. */
  release(): void;
}

function isPositiveInteger(n: number): boolean {
  return Number.isInteger(n) && n > 0;
}

function describeDims(dims: AttentionDims): string {
  return `batch ${dims.batch}, heads ${dims.heads}, headDim ${dims.headDim}`;
}

function checkDims(kernel: string, dims: AttentionDims, scale: number): void {
  const { batch, heads, headDim } = dims;
  if (!isPositiveInteger(batch) || !isPositiveInteger(heads)) {
    throw new KernelError(kernel, `${describeDims(dims)}: batch and heads must be positive integers`);
  }
  if (!Number.isInteger(headDim) || headDim % 4 !== 0 || headDim < 4 || headDim > MAX_HEAD_DIM) {
    const range = `a multiple of 4 in 4..${MAX_HEAD_DIM}`;
    throw new KernelError(
      kernel,
      `${describeDims(dims)}: headDim must be ${range} (vec4 registers per lane)`,
    );
  }
  if (!Number.isFinite(scale)) throw new KernelError(kernel, `scale ${scale} must be a finite number`);
}

/**
 * Every view of a stream is read with the same batch, tokens, heads and headDim: each must be f32, vec4
 * aligned, hold rows of heads*headDim that do not overlap, and end inside its tensor. `stream` prefixes the
 * messages ("image ", "text " or "").
 */
function checkStream(kernel: string, stream: string, views: QkvViews, dims: AttentionDims): void {
  const { batch, heads, headDim } = dims;
  if (!isPositiveInteger(views.tokens)) {
    throw new KernelError(kernel, `${stream}tokens ${views.tokens} must be a positive integer`);
  }
  const extent = {
    rows: batch * views.tokens,
    rowLength: heads * headDim,
    align: 4,
    reason: "heads are read as vec4",
  };
  for (const name of ["q", "k", "v"] as const) {
    checkRowView(kernel, `${stream}${name} view`, views[name], extent);
  }
}

/** A tensor the op would allocate must fit one storage binding. */
function checkAllocation(ctx: GpuContext, kernel: string, what: string, shape: number[]): void {
  const bytes = shape.reduce((a, b) => a * b, 4);
  const limit = ctx.gpu.info.limits.maxStorageBufferBindingSize;
  if (bytes > limit) {
    throw new KernelError(
      kernel,
      `${what} ${formatShape(shape)} needs ${bytes} bytes, over maxStorageBufferBindingSize ${limit}`,
    );
  }
}

function checkOut(kernel: string, out: Tensor, shape: number[], inputs: readonly QkvViews[]): void {
  if (out.dtype !== "f32" || out.shape.join() !== shape.join()) {
    const wanted = `f32 ${formatShape(shape)} [batch, Nt + Ni, heads*headDim]`;
    throw new KernelError(kernel, `out ${formatShape(out.shape)} ${out.dtype} must be ${wanted}`);
  }
  for (const views of inputs) {
    for (const name of ["q", "k", "v"] as const) {
      if (views[name].tensor.buffer === out.buffer) {
        throw new KernelError(kernel, `out shares the buffer of ${name}, which is bound read-only`);
      }
    }
  }
}

/** The masks apply to one stream; the bias must be f32 [heads, N, N] and is bound read-only. */
function checkMasks(options: FlashAttentionOptions, dims: AttentionDims, tokens: number): void {
  const { scoreBias: bias, text, out } = options;
  if (text && (options.causal || bias)) {
    throw new KernelError(FLASH, "causal and scoreBias apply to one stream: not with a joint text stream");
  }
  if (!bias) return;
  const shape = [dims.heads, tokens, tokens];
  if (bias.dtype !== "f32" || bias.shape.join() !== shape.join()) {
    throw new KernelError(
      FLASH,
      `scoreBias ${formatShape(bias.shape)} ${bias.dtype} must be f32 ${formatShape(shape)} [heads, N, N]`,
    );
  }
  if (out && bias.buffer === out.buffer) {
    throw new KernelError(FLASH, "out shares the buffer of scoreBias, which is bound read-only");
  }
}

/** Generated text must stay small enough to compile: the bench's overrides are checked like inputs. */
function checkTiling(ctx: GpuContext, tiling: FlashAttentionTiling | undefined): void {
  if (!tiling) return;
  const { rowsPerLane, workgroupSize } = tiling;
  const lanes = ctx.gpu.info.limits.maxComputeInvocationsPerWorkgroup;
  if (!Number.isInteger(rowsPerLane) || rowsPerLane < 1 || rowsPerLane > 8) {
    throw new KernelError(FLASH, `tiling rowsPerLane ${rowsPerLane} must be an integer in 1..8`);
  }
  if (!Number.isInteger(workgroupSize) || workgroupSize < 1 || workgroupSize > lanes) {
    throw new KernelError(
      FLASH,
      `tiling workgroupSize ${workgroupSize} must be an integer in 1..${lanes} (maxComputeInvocationsPerWorkgroup)`,
    );
  }
}

/** offset and rowStride of a view in vec4 units (both checked to be multiples of 4). */
function vec4View(view: RowView): [["u32", number], ["u32", number]] {
  return [["u32", view.offset / 4], ["u32", view.rowStride / 4]];
}

/**
 * softmax(q k^T * scale [+ scoreBias], causal) v for every (batch, head), online softmax over key blocks;
 * with options.text the attended sequence (and the output) is the text tokens then the image tokens. Checks
 * everything before allocating or binding anything.
 */
export function flashAttention(
  ctx: GpuContext,
  image: QkvViews,
  dims: AttentionDims,
  options: FlashAttentionOptions = {},
): Attention {
  const scale = options.scale ?? 1 / Math.sqrt(dims.headDim);
  checkDims(FLASH, dims, scale);
  const text = options.text;
  checkStream(FLASH, "image ", image, dims);
  if (text) checkStream(FLASH, "text ", text, dims);
  checkMasks(options, dims, image.tokens);
  checkTiling(ctx, options.tiling);
  const textTokens = text?.tokens ?? 0;
  const outShape = [dims.batch, textTokens + image.tokens, dims.heads * dims.headDim];
  if (options.out) checkOut(FLASH, options.out, outShape, text ? [image, text] : [image]);
  else checkAllocation(ctx, FLASH, "out", outShape);

  const tiling = options.tiling ?? flashAttentionTiling(dims.headDim);
  const kernel = ctx.kernels.get({
    name: FLASH,
    source: flashAttentionShader(dims.headDim, tiling, {
      joint: text !== undefined,
      causal: options.causal ?? false,
      scoreBias: options.scoreBias !== undefined,
    }),
    bindings: FLASH_BINDINGS,
  });
  // Without a text stream its bindings repeat the image views (never read: text_tokens is 0).
  const textViews = text ?? image;
  const uniform = packUniform([
    ["u32", textTokens],
    ["u32", image.tokens],
    ["u32", dims.heads],
    ...vec4View(textViews.q),
    ...vec4View(textViews.k),
    ...vec4View(textViews.v),
    ...vec4View(image.q),
    ...vec4View(image.k),
    ...vec4View(image.v),
    ["f32", scale],
  ]);
  const grid = [
    groups(outShape[1], tiling.workgroupSize * tiling.rowsPerLane),
    dims.heads,
    dims.batch,
  ] as const;
  const out = options.out ?? ctx.pool.tensor(outShape);
  const inputs = [textViews.q, textViews.k, textViews.v, image.q, image.k, image.v].map((view) =>
    view.tensor
  );
  // Without a bias its binding repeats the image q view (never read).
  const scoreBias = options.scoreBias ?? image.q.tensor;
  let dispatches: Dispatch[];
  try {
    dispatches = [bindKernel(ctx.gpu, kernel, [...inputs, out, scoreBias], grid, uniform)];
  } catch (e) {
    if (!options.out) out.release();
    throw e;
  }
  return {
    dispatches,
    out,
    release() {
      if (!options.out) out.release();
      disposeDispatches(dispatches);
    },
  };
}

/**
 * The same attention (one stream, no joint text) as three kernels over a materialised [batch, heads, N, N]
 * score tensor: the baseline flashAttention is benchmarked against.
 */
export function naiveAttention(
  ctx: GpuContext,
  views: QkvViews,
  dims: AttentionDims,
  options: Pick<FlashAttentionOptions, "scale"> = {},
): Attention {
  const scale = options.scale ?? 1 / Math.sqrt(dims.headDim);
  checkDims(NAIVE, dims, scale);
  checkStream(NAIVE, "", views, dims);
  const { batch, heads, headDim } = dims;
  const n = views.tokens;
  const outShape = [batch, n, heads * headDim];
  const scoresShape = [batch, heads, n, n];
  checkAllocation(ctx, NAIVE, "out", outShape);
  checkAllocation(ctx, NAIVE, "scores", scoresShape);

  const uniform = () =>
    packUniform([
      ["u32", n],
      ["u32", heads],
      ["u32", headDim],
      ...[views.q, views.k, views.v].flatMap((view): ["u32", number][] => [
        ["u32", view.offset],
        ["u32", view.rowStride],
      ]),
      ["f32", scale],
    ]);
  const stage = (entry: string) =>
    ctx.kernels.get({
      name: NAIVE,
      entry,
      bindings: NAIVE_BINDINGS,
      constants: { WG_X: NAIVE_WG, WG_Y: NAIVE_WG },
    });
  const scores = ctx.pool.tensor(scoresShape);
  const out = ctx.pool.tensor(outShape);
  const buffers = [views.q.tensor, views.k.tensor, views.v.tensor, scores, out];
  const dispatches: Dispatch[] = [];
  const release = () => {
    scores.release();
    out.release();
    disposeDispatches(dispatches);
  };
  try {
    const bh = batch * heads;
    dispatches.push(
      bindKernel(
        ctx.gpu,
        stage("scores"),
        buffers,
        [groups(n, NAIVE_WG), groups(n, NAIVE_WG), bh],
        uniform(),
      ),
      bindKernel(ctx.gpu, stage("softmax_rows"), buffers, [groups(n, NAIVE_WG * NAIVE_WG), 1, bh], uniform()),
      bindKernel(
        ctx.gpu,
        stage("weighted_sum"),
        buffers,
        [groups(headDim, NAIVE_WG), groups(n, NAIVE_WG), bh],
        uniform(),
      ),
    );
  } catch (e) {
    release();
    throw e;
  }
  return { dispatches, out, release };
}
