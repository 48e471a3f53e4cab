// Row normalisations of a DiT block (shaders/norm.wgsl): LayerNorm (affine or not), RMSNorm (out of place,
// or in place on the q/k head rows of a fused qkv tensor) and LayerNorm fused with adaLN modulate.
import type { GpuContext } from "../gpu/context.ts";
import { bindKernel, type Dispatch, disposeDispatches, KernelError, packUniform } from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { flatGrid } from "./grid.ts";
import { checkModulation, type ModulationLayout } from "./modulate.ts";
import { checkRowView, type RowView } from "./row_view.ts";

const SHADER = "norm";
const WG = 256;
const BINDINGS = ["read", "read", "read", "read", "read_write", "uniform"] as const;

/** DiT, FLUX and SD3 all normalise with eps 1e-6. */
export const DEFAULT_EPS = 1e-6;

export interface NormOp {
  dispatches: Dispatch[];
  /** The normalised rows: a new tensor, options.out, or the view's tensor for rmsNormInPlace. */
  out: Tensor;
  /** Releases what the op allocated (a new out, the uniform, a stand-in); never its inputs or options.out. */
  release(): void;
}

interface Tuning {
  eps?: number;
  /** Invocations per row, a power of two in 1..256 (default lanesFor(C)); 1 = the naive one per row. */
  lanes?: number;
}

export interface LayerNormOptions extends Tuning {
  weight?: Tensor;
  bias?: Tensor;
  /** Write into this f32 tensor of x's shape instead of a new one (scratch shared by a model's blocks). */
  out?: Tensor;
}

export interface RmsNormOptions extends Tuning {
  weight?: Tensor;
}

export interface LayerNormModulateOptions extends LayerNormOptions {
  /** Chunk indices of shift and scale in mod [B, k*C]. */
  shift: number;
  scale: number;
}

export interface HeadRowsDims {
  /** Token rows in the view (batch * sequence). */
  tokens: number;
  heads: number;
  headDim: number;
}

/**
 * The largest power of two of lanes with >= 16 values each (1..256): a long row spreads over a whole
 * workgroup (C = 4096: 256 lanes), a short one shares it (C = 128: 8 lanes, 32 rows per workgroup), and
 * the tree stays shallow where rows are short. On llvmpipe, where barriers are costly, fewer lanes win:
 * see the `norm` bench.
 */
export function lanesFor(channels: number): number {
  let lanes = 1;
  while (lanes < WG && lanes * 2 * 16 <= channels) lanes *= 2;
  return lanes;
}

interface Launch {
  kernel: string;
  center: boolean;
  /** x, or the tensor normalised in place. */
  source: Tensor;
  inPlace: boolean;
  tokens: number;
  heads: number;
  channels: number;
  offset: number;
  rowStride: number;
  weight?: Tensor;
  bias?: Tensor;
  modulation?: { mod: Tensor; layout: ModulationLayout; shift: number; scale: number };
  /** Given output (out of place only). */
  out?: Tensor;
  tuning: Tuning;
}

function checkTuning(kernel: string, tuning: Tuning, channels: number): { eps: number; lanes: number } {
  const eps = tuning.eps ?? DEFAULT_EPS;
  const lanes = tuning.lanes ?? lanesFor(channels);
  if (!Number.isFinite(eps) || eps < 0) {
    throw new KernelError(kernel, `eps ${eps} must be a finite number >= 0`);
  }
  if (!Number.isInteger(Math.log2(lanes)) || lanes > WG) {
    throw new KernelError(kernel, `lanes ${lanes} must be a power of two in 1..${WG}`);
  }
  return { eps, lanes };
}

function checkParameter(
  kernel: string,
  what: string,
  t: Tensor | undefined,
  channels: number,
  x: Tensor,
): void {
  if (!t) return;
  if (t.dtype !== "f32" || t.shape.length !== 1 || t.shape[0] !== channels) {
    throw new KernelError(
      kernel,
      `${what} ${formatShape(t.shape)} ${t.dtype} must be f32 [${channels}], the normalised length of ` +
        `${formatShape(x.shape)}`,
    );
  }
  if (t.buffer === x.buffer) {
    throw new KernelError(kernel, `${what} shares the buffer of the rows it normalises`);
  }
}

/** Checks x as rows of its last dimension; returns C. */
function checkRows(kernel: string, x: Tensor): number {
  if (x.dtype !== "f32" || x.shape.length === 0) {
    throw new KernelError(
      kernel,
      `x ${formatShape(x.shape)} ${x.dtype} must be f32 with at least one dimension`,
    );
  }
  return x.shape[x.shape.length - 1];
}

/** A given output must be f32 of x's shape, in a buffer no read-only binding of the dispatch holds. */
function checkOut(kernel: string, out: Tensor, x: Tensor, reads: readonly (Tensor | undefined)[]): void {
  if (out.dtype !== "f32" || out.shape.join() !== x.shape.join()) {
    throw new KernelError(
      kernel,
      `out ${formatShape(out.shape)} ${out.dtype} must be f32 of x's shape ${formatShape(x.shape)}`,
    );
  }
  if ([x, ...reads].some((t) => t?.buffer === out.buffer)) {
    throw new KernelError(kernel, "out shares the buffer of an input, which is bound read-only");
  }
}

function launch(ctx: GpuContext, spec: Launch): NormOp {
  const { eps, lanes } = checkTuning(spec.kernel, spec.tuning, spec.channels);
  const { source, inPlace, weight, bias, modulation } = spec;
  if (spec.out) checkOut(spec.kernel, spec.out, source, [weight, bias, modulation?.mod]);
  const rows = spec.tokens * spec.heads;
  const allocated = !inPlace && !spec.out;
  const out = inPlace ? source : spec.out ?? ctx.pool.tensor(source.shape);
  // Unread bindings take a buffer that is read-only here: x out of place (one buffer may fill several
  // read-only bindings), in place the weight or, without one, a one-element stand-in.
  const standIn = inPlace && !weight ? ctx.pool.tensor([1]) : undefined;
  const filler = inPlace ? (weight ?? standIn!) : source;
  const kernel = ctx.kernels.get({
    name: SHADER,
    bindings: BINDINGS,
    constants: {
      WG,
      LANES: lanes,
      CENTER: Number(spec.center),
      HAS_WEIGHT: Number(weight !== undefined),
      HAS_BIAS: Number(bias !== undefined),
      MODULATE: Number(modulation !== undefined),
      IN_PLACE: Number(inPlace),
    },
  });
  // Without modulation every row is sample 0 and the chunk offsets are never read.
  const tokensPerSample = modulation?.layout.tokens ?? rows;
  const modStride = (modulation?.layout.chunks ?? 0) * spec.channels;
  const uniform = packUniform([
    ["u32", rows],
    ["u32", spec.channels],
    ["u32", spec.heads],
    ["u32", spec.offset],
    ["u32", spec.rowStride],
    ["f32", eps],
    ["u32", tokensPerSample],
    ["u32", modStride],
    ["u32", (modulation?.shift ?? 0) * spec.channels],
    ["u32", (modulation?.scale ?? 0) * spec.channels],
  ]);
  const buffers = [
    inPlace ? filler : source,
    weight ?? filler,
    bias ?? filler,
    modulation?.mod ?? filler,
    out,
  ];
  const grid = flatGrid(ctx.gpu, Math.ceil(rows / (WG / lanes)));
  let dispatches: Dispatch[];
  try {
    dispatches = [bindKernel(ctx.gpu, kernel, buffers, grid, uniform)];
  } catch (e) {
    if (allocated) out.release();
    standIn?.release();
    throw e;
  }
  return {
    dispatches,
    out,
    release() {
      if (allocated) out.release();
      standIn?.release();
      disposeDispatches(dispatches);
    },
  };
}

/** Contiguous rows of x's last dimension, out of place. */
function rowsOf(x: Tensor, channels: number) {
  return {
    source: x,
    inPlace: false,
    tokens: x.size / channels,
    heads: 1,
    channels,
    offset: 0,
    rowStride: channels,
  };
}

/** LayerNorm over the last dimension of x: (x - mean) / sqrt(var + eps) [* weight] [+ bias]. */
export function layerNorm(ctx: GpuContext, x: Tensor, options: LayerNormOptions = {}): NormOp {
  const kernel = "layer_norm";
  const channels = checkRows(kernel, x);
  checkParameter(kernel, "weight", options.weight, channels, x);
  checkParameter(kernel, "bias", options.bias, channels, x);
  return launch(ctx, {
    kernel,
    center: true,
    ...rowsOf(x, channels),
    weight: options.weight,
    bias: options.bias,
    out: options.out,
    tuning: options,
  });
}

/** RMSNorm over the last dimension of x: x * rsqrt(mean(x^2) + eps) [* weight]. */
export function rmsNorm(ctx: GpuContext, x: Tensor, options: RmsNormOptions = {}): NormOp {
  const kernel = "rms_norm";
  const channels = checkRows(kernel, x);
  checkParameter(kernel, "weight", options.weight, channels, x);
  return launch(ctx, {
    kernel,
    center: false,
    ...rowsOf(x, channels),
    weight: options.weight,
    tuning: options,
  });
}

function checkHeadRows(kernel: string, view: RowView, dims: HeadRowsDims): void {
  const { tokens, heads, headDim } = dims;
  if (![tokens, heads, headDim].every((n) => Number.isInteger(n) && n > 0)) {
    throw new KernelError(
      kernel,
      `tokens ${tokens}, heads ${heads}, headDim ${headDim} must be positive integers`,
    );
  }
  checkRowView(kernel, "view", view, { rows: tokens, rowLength: heads * headDim, align: 1 });
}

/**
 * RMSNorm in place on head rows of length headDim, e.g. q or k inside qkv [B, N, 3*H*D] (q: offset 0,
 * k: offset H*D, rowStride 3*H*D); weight [headDim] is shared by every head (FLUX / SD3 qk-norm).
 */
export function rmsNormInPlace(
  ctx: GpuContext,
  view: RowView,
  dims: HeadRowsDims,
  options: RmsNormOptions = {},
): NormOp {
  const kernel = "rms_norm_in_place";
  checkHeadRows(kernel, view, dims);
  checkParameter(kernel, "weight", options.weight, dims.headDim, view.tensor);
  return launch(ctx, {
    kernel,
    center: false,
    source: view.tensor,
    inPlace: true,
    tokens: dims.tokens,
    heads: dims.heads,
    channels: dims.headDim,
    offset: view.offset,
    rowStride: view.rowStride,
    weight: options.weight,
    tuning: options,
  });
}

/**
 * adaLN: LayerNorm(x) * (1 + scale[s]) + shift[s] for x [B, T, C], chunks of mod [B, k*C]; the LayerNorm's
 * own weight and bias, when given, apply first (DiT's affine norm3).
 */
export function layerNormModulate(
  ctx: GpuContext,
  x: Tensor,
  mod: Tensor,
  options: LayerNormModulateOptions,
): NormOp {
  const kernel = "layer_norm_modulate";
  const layout = checkModulation(kernel, x, mod, { shift: options.shift, scale: options.scale });
  checkParameter(kernel, "weight", options.weight, layout.channels, x);
  checkParameter(kernel, "bias", options.bias, layout.channels, x);
  return launch(ctx, {
    kernel,
    center: true,
    ...rowsOf(x, layout.channels),
    weight: options.weight,
    bias: options.bias,
    modulation: { mod, layout, shift: options.shift, scale: options.scale },
    out: options.out,
    tuning: options,
  });
}
