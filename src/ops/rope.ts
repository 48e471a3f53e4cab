// Rotary position embedding, FLUX-style N-D axes, applied in place to q and k (shaders/rope.wgsl).
// The (cos, sin) table is built once per request shape (positions come from the image grid and prompt length,
// known on the CPU) and every block of every step reuses it, so the per-step kernel only streams q and k.
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
import { flatGrid } from "./grid.ts";
import { checkRowView, type RowView } from "./row_view.ts";

const KERNEL = "rope";
const WG = 64;
const BINDINGS = ["read", "read_write", "uniform"] as const;

/** FLUX: axesDim [16, 56, 56] (text marker, row, column; sums to the head dim 128), theta 10000. */
export interface RopeAxes {
  axesDim: readonly number[];
  theta: number;
}

/** Per-(token, pair) rotation, [tokens, headDim / 2, 2] holding (cos, sin); shared by every batch and head. */
export interface RopeTable {
  cosSin: Tensor;
  tokens: number;
  headDim: number;
  axes: RopeAxes;
  release(): void;
}

export interface RopeDims {
  batch: number;
  heads: number;
  /** The model's head dim; must equal sum(axesDim) of the table. */
  headDim: number;
}

export interface Rope {
  /** One per view; they rotate in place and need no ordering between them. */
  dispatches: Dispatch[];
  release(): void;
}

function isPositiveInteger(n: number): boolean {
  return Number.isInteger(n) && n > 0;
}

/**
 * ids [tokens, axes] (row-major float positions, FLUX: text tokens [0, 0, 0], image tokens [0, row, col])
 * -> the uploaded (cos, sin) table. Angles pos_a * theta^(-2i/d_a) are formed in float64 as diffusers'
 * FluxPosEmbed does (freqs_dtype float64), then rounded once to f32.
 */
export function ropeTable(
  ctx: GpuContext,
  ids: ArrayLike<number>,
  idsShape: readonly number[],
  axes: RopeAxes,
): RopeTable {
  const { axesDim, theta } = axes;
  const axesText = formatShape(axesDim);
  if (axesDim.length === 0 || !axesDim.every((d) => isPositiveInteger(d) && d % 2 === 0)) {
    throw new KernelError(
      KERNEL,
      `axes_dim ${axesText} must be one or more positive even integers (pairs never straddle two axes)`,
    );
  }
  if (!(Number.isFinite(theta) && theta > 0)) {
    throw new KernelError(KERNEL, `theta ${theta} must be a finite number > 0`);
  }
  const [tokens, axisCount] = idsShape;
  if (idsShape.length !== 2 || !isPositiveInteger(tokens) || axisCount !== axesDim.length) {
    throw new KernelError(
      KERNEL,
      `ids shape ${formatShape(idsShape)} must be [tokens, ${axesDim.length}]: ` +
        `one column per axes_dim entry of ${axesText}`,
    );
  }
  if (ids.length !== tokens * axisCount) {
    throw new KernelError(
      KERNEL,
      `ids has ${ids.length} values, shape ${formatShape(idsShape)} needs ${tokens * axisCount}`,
    );
  }
  for (let i = 0; i < ids.length; i++) {
    if (!Number.isFinite(ids[i])) {
      throw new KernelError(KERNEL, `ids[${i}] = ${ids[i]} is not a finite position`);
    }
  }
  const headDim = axesDim.reduce((a, b) => a + b, 0);
  const half = headDim / 2;
  // Pair j of a head belongs to one axis and has one frequency; both are the same for every token.
  const pairAxis = new Int32Array(half);
  const pairOmega = new Float64Array(half);
  let pair = 0;
  axesDim.forEach((dim, axis) => {
    for (let i = 0; i < dim / 2; i++, pair++) {
      pairAxis[pair] = axis;
      pairOmega[pair] = Math.pow(theta, (-2 * i) / dim);
    }
  });
  const cosSin = new Float32Array(tokens * half * 2);
  for (let n = 0; n < tokens; n++) {
    for (let j = 0; j < half; j++) {
      const angle = ids[n * axisCount + pairAxis[j]] * pairOmega[j];
      cosSin[(n * half + j) * 2] = Math.cos(angle);
      cosSin[(n * half + j) * 2 + 1] = Math.sin(angle);
    }
  }
  const tensor = ctx.pool.upload(cosSin, [tokens, half, 2]);
  return { cosSin: tensor, tokens, headDim, axes, release: () => tensor.release() };
}

/** Rotates q and k (or any list of views) in place by the table's angles. */
export function rope(ctx: GpuContext, views: readonly RowView[], table: RopeTable, dims: RopeDims): Rope {
  const { batch, heads, headDim } = dims;
  if (!isPositiveInteger(batch) || !isPositiveInteger(heads)) {
    throw new KernelError(KERNEL, `batch ${batch} and heads ${heads} must be positive integers`);
  }
  if (headDim !== table.headDim) {
    throw new KernelError(
      KERNEL,
      `head dim ${headDim} must equal sum(axes_dim ${formatShape(table.axes.axesDim)}) = ${table.headDim}`,
    );
  }
  // q or k: element (b, n, h, d) at row b*tokens + n of the view.
  const extent = {
    rows: batch * table.tokens,
    rowLength: heads * headDim,
    align: 2,
    reason: "pairs are read as vec2",
  };
  views.forEach((view, i) => checkRowView(KERNEL, `view ${i}`, view, extent));
  const kernel = ctx.kernels.get({ name: KERNEL, bindings: BINDINGS, constants: { WG } });
  const half = headDim / 2;
  const [x, y] = flatGrid(ctx.gpu, groups(table.tokens * half, WG));
  const workgroups = [x, y, batch] as const;
  const dispatches = views.map((view) =>
    bindKernel(
      ctx.gpu,
      kernel,
      [table.cosSin, view.tensor],
      workgroups,
      packUniform([
        ["u32", table.tokens],
        ["u32", half],
        ["u32", heads],
        ["u32", view.offset / 2],
        ["u32", view.rowStride / 2],
      ]),
    )
  );
  return { dispatches, release: () => disposeDispatches(dispatches) };
}
