// CPU reference of src/ops/norm.ts: statistics in float64, two-pass like the kernel.
import type { HeadRowsDims } from "../ops/norm.ts";
import { chunkValue, type ModulationChunks, type ModulationShape } from "./modulate.ts";

const DEFAULT_EPS = 1e-6;

export interface NormParameters {
  weight?: ArrayLike<number>;
  bias?: ArrayLike<number>;
  eps?: number;
}

/** Normalises data[start + c], c < length, into out[dst + c] (center: LayerNorm, else RMSNorm). */
function normalizeRow(
  data: ArrayLike<number>,
  start: number,
  length: number,
  center: boolean,
  params: NormParameters,
  out: Float32Array,
  dst: number,
  modulateValue?: (y: number, c: number) => number,
): void {
  let mean = 0;
  if (center) {
    for (let c = 0; c < length; c++) mean += data[start + c];
    mean /= length;
  }
  let squares = 0;
  for (let c = 0; c < length; c++) squares += (data[start + c] - mean) ** 2;
  const rstd = 1 / Math.sqrt(squares / length + (params.eps ?? DEFAULT_EPS));
  for (let c = 0; c < length; c++) {
    let y = (data[start + c] - mean) * rstd;
    if (params.weight) y *= params.weight[c];
    if (params.bias) y += params.bias[c];
    out[dst + c] = modulateValue ? modulateValue(y, c) : y;
  }
}

/** LayerNorm over rows of `channels` values. */
export function layerNorm(x: ArrayLike<number>, channels: number, params: NormParameters = {}): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length; r += channels) normalizeRow(x, r, channels, true, params, out, r);
  return out;
}

/** RMSNorm over rows of `channels` values (`bias` is not part of RMSNorm and is ignored). */
export function rmsNorm(
  x: ArrayLike<number>,
  channels: number,
  params: Omit<NormParameters, "bias"> = {},
): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length; r += channels) normalizeRow(x, r, channels, false, params, out, r);
  return out;
}

/** Returns a copy of `data` whose head rows (token r, head h) at offset + r*rowStride + h*headDim are RMS-normalised. */
export function rmsNormInPlace(
  data: Float32Array,
  view: { offset: number; rowStride: number },
  dims: HeadRowsDims,
  params: Omit<NormParameters, "bias"> = {},
): Float32Array {
  const out = data.slice();
  for (let r = 0; r < dims.tokens; r++) {
    for (let h = 0; h < dims.heads; h++) {
      const start = view.offset + r * view.rowStride + h * dims.headDim;
      normalizeRow(data, start, dims.headDim, false, params, out, start);
    }
  }
  return out;
}

/** LayerNorm(x) (affine when params say so) * (1 + scale[s]) + shift[s] for x [B, T, C] and mod [B, k*C]. */
export function layerNormModulate(
  x: ArrayLike<number>,
  shape: ModulationShape,
  mod: ArrayLike<number>,
  chunks: Pick<ModulationChunks, "shift" | "scale">,
  params: NormParameters = {},
): Float32Array {
  const [, tokens, channels] = shape;
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / channels; r++) {
    const s = Math.floor(r / tokens);
    normalizeRow(x, r * channels, channels, true, params, out, r * channels, (y, c) => {
      const scale = chunkValue(mod, shape, s, chunks.scale, c);
      const shift = chunkValue(mod, shape, s, chunks.shift, c);
      return y * (1 + scale) + shift;
    });
  }
  return out;
}
