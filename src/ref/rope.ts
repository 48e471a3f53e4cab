// CPU reference of src/ops/rope.ts: FLUX-style N-D rotary embedding with every angle computed in float64
// straight from the position ids (no table), so it checks the op's table as well as its kernel.
import type { RopeAxes, RopeDims } from "../ops/rope.ts";
import type { RowView } from "../ops/row_view.ts";

/**
 * Returns a copy of `data` with q (or k) rotated, element (b, n, h, d) at
 * rows.offset + (b*tokens + n)*rows.rowStride + h*headDim + d; everything else is copied unchanged.
 * `ids` is [tokens, axes] row-major, one column per entry of `axes.axesDim`.
 */
export function rope(
  data: Float32Array,
  rows: Pick<RowView, "offset" | "rowStride">,
  ids: ArrayLike<number>,
  axes: RopeAxes,
  dims: Pick<RopeDims, "batch" | "heads">,
): Float32Array {
  const out = data.slice();
  const axisCount = axes.axesDim.length;
  const headDim = axes.axesDim.reduce((a, b) => a + b, 0);
  const tokens = ids.length / axisCount;
  for (let b = 0; b < dims.batch; b++) {
    for (let n = 0; n < tokens; n++) {
      for (let h = 0; h < dims.heads; h++) {
        let segment = rows.offset + (b * tokens + n) * rows.rowStride + h * headDim;
        axes.axesDim.forEach((dim, a) => {
          const pos = ids[n * axisCount + a];
          for (let i = 0; i < dim / 2; i++) {
            const angle = pos / Math.pow(axes.theta, (2 * i) / dim);
            const x0 = data[segment + 2 * i];
            const x1 = data[segment + 2 * i + 1];
            out[segment + 2 * i] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
            out[segment + 2 * i + 1] = x0 * Math.sin(angle) + x1 * Math.cos(angle);
          }
          segment += dim;
        });
      }
    }
  }
  return out;
}
