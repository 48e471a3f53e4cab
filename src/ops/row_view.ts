// A strided view of head rows inside any f32 tensor, e.g. q, k or v of a fused qkv projection, and the one
// check every op that reads such views (rope, rms_norm_in_place, attention) makes before binding it.
import { KernelError } from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";

/**
 * Element (row r, head h, d) at offset + r*rowStride + h*headDim + d, rows of heads*headDim values. Rope and
 * attention number their rows b*tokens + n; q of qkv [B, N, 3*H*D] is offset 0, rowStride 3*H*D.
 */
export interface RowView {
  tensor: Tensor;
  offset: number;
  rowStride: number;
}

export interface RowViewExtent {
  /** Rows the op reads or writes (batch * tokens); a positive integer, checked by the caller. */
  rows: number;
  /** heads * headDim: the values of one row the op touches. */
  rowLength: number;
  /** offset and rowStride must be multiples of this (2 for vec2 loads, 4 for vec4, 1 for scalars). */
  align: number;
  /** Why `align` (e.g. "pairs are read as vec2"), for the messages; unused when align is 1. */
  reason?: string;
}

/**
 * Throws a KernelError naming `kernel`, `what` (e.g. "image q view") and the tensor's shape unless the view is
 * f32, aligned, holds rows that do not overlap and ends inside its tensor.
 */
export function checkRowView(kernel: string, what: string, view: RowView, extent: RowViewExtent): void {
  const { tensor, offset, rowStride } = view;
  const { rows, rowLength, align, reason } = extent;
  const described = `${what} (offset ${offset}, rowStride ${rowStride}) of ${tensor.dtype} tensor ${
    formatShape(tensor.shape)
  }`;
  if (tensor.dtype !== "f32") throw new KernelError(kernel, `${described} must be f32`);
  const multiple = align === 1 ? "an integer" : `a multiple of ${align}`;
  const why = align !== 1 && reason ? ` (${reason})` : "";
  if (!Number.isInteger(offset) || offset < 0 || offset % align !== 0) {
    throw new KernelError(kernel, `${described}: offset must be ${multiple} >= 0${why}`);
  }
  // Overlapping rows would be updated by two invocations at once (rope and norm work in place).
  if (!Number.isInteger(rowStride) || rowStride < rowLength || rowStride % align !== 0) {
    throw new KernelError(
      kernel,
      `${described}: rowStride must be ${multiple} >= heads*headDim = ${rowLength}${why}; rows must not overlap`,
    );
  }
  const end = offset + (rows - 1) * rowStride + rowLength;
  if (end > tensor.size) {
    throw new KernelError(
      kernel,
      `${described}: ${rows} rows of heads*headDim = ${rowLength} reach element ${end}; allowed: ` +
        `offset + (rows-1)*rowStride + heads*headDim <= ${tensor.size}`,
    );
  }
}
