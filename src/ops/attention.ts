// Multi-head softmax attention out = softmax(q k^T * scale) v over strided q/k/v views, so q, k and v are read
// straight out of a fused qkv projection. flashAttention (shaders/flash_attention.wgsl + the generated tile
// of src/ops/flash_attention_wgsl.ts) never materialises the [N, N] scores and optionally attends a text
// stream and an image stream jointly (FLUX dual stream), or masks one stream (causal, an additive score
// bias); crossAttention (the same kernel) lets one stream's queries attend another stream's keys and values
// of any length (Wan's cross-attention on the text). The bench's three-kernel baseline is
// src/ops/attention_naive.ts.
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
import {
  flashAttentionShader,
  type FlashAttentionTiling,
  type FlashAttentionVariant,
} from "./flash_attention_wgsl.ts";
import { checkRowView, type RowView } from "./row_view.ts";

const FLASH = "flash_attention";
const QKV_BINDINGS = ["read", "read", "read"] as const;
/** Text q, k, v; image q, k, v; out; score bias; uniform. */
const FLASH_BINDINGS = [...QKV_BINDINGS, ...QKV_BINDINGS, "read_write", "read", "uniform"] as const;

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

/** The queries of one stream (cross-attention), element (b, n, h, d) as in QkvViews. */
export interface QueryViews {
  q: RowView;
  tokens: number;
}

/** The keys and values of one stream (cross-attention), element (b, n, h, d) as in QkvViews. */
export interface KeyValueViews {
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
  /** Write into this [batch, Nt + Ni, heads * headDim] tensor (cross-attention: [batch, Ni, ...]). */
  out?: Tensor;
  /** Overrides the default tiling; for benchmarks. */
  tiling?: FlashAttentionTiling;
}

export type CrossAttentionOptions = Pick<FlashAttentionOptions, "scale" | "out" | "tiling">;

export interface Attention {
  dispatches: Dispatch[];
  /** [batch, Nt + Ni, heads * headDim]: text rows first, then image rows (cross-attention: image rows). */
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

/** Shared with src/ops/attention_naive.ts, as are checkStream and checkAllocation. */
export function checkDims(kernel: string, dims: AttentionDims, scale: number): void {
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

type ViewName = "q" | "k" | "v";

/**
 * Every view of a stream (those it has of q, k, v) is read with the same batch, tokens, heads and headDim:
 * each must be f32, vec4 aligned, hold rows of heads*headDim that do not overlap, and end inside its tensor.
 * `stream` prefixes the messages ("image ", "text " or "").
 */
export function checkStream(
  kernel: string,
  stream: string,
  views: Partial<Record<ViewName, RowView>> & { tokens: number },
  dims: AttentionDims,
): void {
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
    const view = views[name];
    if (view) checkRowView(kernel, `${stream}${name} view`, view, extent);
  }
}

/** A tensor the op would allocate must fit one storage binding. */
export function checkAllocation(ctx: GpuContext, kernel: string, what: string, shape: number[]): void {
  const bytes = shape.reduce((a, b) => a * b, 4);
  const limit = ctx.gpu.info.limits.maxStorageBufferBindingSize;
  if (bytes > limit) {
    throw new KernelError(
      kernel,
      `${what} ${formatShape(shape)} needs ${bytes} bytes, over maxStorageBufferBindingSize ${limit}`,
    );
  }
}

function checkOut(
  kernel: string,
  out: Tensor,
  shape: number[],
  rows: string,
  inputs: readonly [ViewName, RowView][],
): void {
  if (out.dtype !== "f32" || out.shape.join() !== shape.join()) {
    const wanted = `f32 ${formatShape(shape)} [batch, ${rows}, heads*headDim]`;
    throw new KernelError(kernel, `out ${formatShape(out.shape)} ${out.dtype} must be ${wanted}`);
  }
  for (const [name, view] of inputs) {
    if (view.tensor.buffer === out.buffer) {
      throw new KernelError(kernel, `out shares the buffer of ${name}, which is bound read-only`);
    }
  }
}

const viewsOf = (views: QkvViews): [ViewName, RowView][] => [["q", views.q], ["k", views.k], ["v", views.v]];

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
  const inputs = text ? [...viewsOf(image), ...viewsOf(text)] : viewsOf(image);
  if (options.out) checkOut(FLASH, options.out, outShape, "Nt + Ni", inputs);
  else checkAllocation(ctx, FLASH, "out", outShape);
  return launchFlash(ctx, dims, {
    // Without a text stream its bindings repeat the image views (never read: text_tokens is 0).
    text: text ?? image,
    image,
    textTokens,
    outShape,
    variant: {
      joint: text !== undefined,
      cross: false,
      causal: options.causal ?? false,
      scoreBias: options.scoreBias !== undefined,
    },
    scale,
    options,
  });
}

/**
 * Cross-attention softmax(q k^T * scale) v: the queries of one stream (Wan's video tokens) attend the keys
 * and values of another (its text tokens), of any lengths; out [batch, Nq, heads * headDim]. The flash kernel
 * with the text key walk only. Checks everything before allocating or binding anything.
 */
export function crossAttention(
  ctx: GpuContext,
  queries: QueryViews,
  keys: KeyValueViews,
  dims: AttentionDims,
  options: CrossAttentionOptions = {},
): Attention {
  const scale = options.scale ?? 1 / Math.sqrt(dims.headDim);
  checkDims(FLASH, dims, scale);
  checkStream(FLASH, "query ", queries, dims);
  checkStream(FLASH, "key ", keys, dims);
  checkTiling(ctx, options.tiling);
  const outShape = [dims.batch, queries.tokens, dims.heads * dims.headDim];
  const inputs: [ViewName, RowView][] = [["q", queries.q], ["k", keys.k], ["v", keys.v]];
  if (options.out) checkOut(FLASH, options.out, outShape, "Nq", inputs);
  else checkAllocation(ctx, FLASH, "out", outShape);
  return launchFlash(ctx, dims, {
    // The keys take the text bindings; the unread text q and image k, v repeat bound views.
    text: { q: queries.q, ...keys },
    image: { q: queries.q, k: keys.k, v: keys.v, tokens: queries.tokens },
    textTokens: keys.tokens,
    outShape,
    variant: { joint: false, cross: true, causal: false, scoreBias: false },
    scale,
    options,
  });
}

interface FlashLaunch {
  /** Views bound to the text and image bindings; tokens of the image stream are the image rows. */
  text: QkvViews;
  image: QkvViews;
  textTokens: number;
  /** [batch, query rows, heads * headDim] */
  outShape: number[];
  variant: FlashAttentionVariant;
  scale: number;
  options: Pick<FlashAttentionOptions, "out" | "scoreBias" | "tiling">;
}

/** Binds the flash kernel of a checked launch; allocates out unless one is given. */
function launchFlash(ctx: GpuContext, dims: AttentionDims, spec: FlashLaunch): Attention {
  const { text, image, options } = spec;
  const tiling = options.tiling ?? flashAttentionTiling(dims.headDim);
  const kernel = ctx.kernels.get({
    name: FLASH,
    source: flashAttentionShader(dims.headDim, tiling, spec.variant),
    bindings: FLASH_BINDINGS,
  });
  const uniform = packUniform([
    ["u32", spec.textTokens],
    ["u32", image.tokens],
    ["u32", dims.heads],
    ...vec4View(text.q),
    ...vec4View(text.k),
    ...vec4View(text.v),
    ...vec4View(image.q),
    ...vec4View(image.k),
    ...vec4View(image.v),
    ["f32", spec.scale],
  ]);
  const grid = [
    groups(spec.outShape[1], tiling.workgroupSize * tiling.rowsPerLane),
    dims.heads,
    dims.batch,
  ] as const;
  const out = options.out ?? ctx.pool.tensor(spec.outShape);
  const inputs = [text.q, text.k, text.v, image.q, image.k, image.v].map((view) => view.tensor);
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
