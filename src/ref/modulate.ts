// CPU reference of src/ops/modulate.ts. Values are rounded to f32 once, at the end, as the kernel stores them.

/** [B, T, C] of x; mod is [B, k*C] with k = mod.length / (B*C). */
export type ModulationShape = readonly [number, number, number];

export interface ModulationChunks {
  shift: number;
  scale: number;
  gate: number;
}

/** Channel c of chunk `chunk` of sample s in mod [B, k*C]. */
export function chunkValue(
  mod: ArrayLike<number>,
  shape: ModulationShape,
  s: number,
  chunk: number,
  c: number,
): number {
  const [batch, , channels] = shape;
  const stride = mod.length / batch;
  return mod[s * stride + chunk * channels + c];
}

/** Calls f(element, sample, channel) for every element of x [B, T, C]. */
function forEachElement(shape: ModulationShape, f: (e: number, s: number, c: number) => void): void {
  const [batch, tokens, channels] = shape;
  for (let e = 0; e < batch * tokens * channels; e++) f(e, Math.floor(e / (tokens * channels)), e % channels);
}

/** x * (1 + scale[s]) + shift[s]. */
export function modulate(
  x: ArrayLike<number>,
  shape: ModulationShape,
  mod: ArrayLike<number>,
  chunks: Pick<ModulationChunks, "shift" | "scale">,
): Float32Array {
  const out = new Float32Array(x.length);
  forEachElement(shape, (e, s, c) => {
    out[e] = x[e] * (1 + chunkValue(mod, shape, s, chunks.scale, c)) +
      chunkValue(mod, shape, s, chunks.shift, c);
  });
  return out;
}

/** x + gate[s] * y (returned; the kernel updates x in place). */
export function gatedResidual(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  shape: ModulationShape,
  mod: ArrayLike<number>,
  chunks: Pick<ModulationChunks, "gate">,
): Float32Array {
  const out = new Float32Array(x.length);
  forEachElement(shape, (e, s, c) => {
    out[e] = x[e] + chunkValue(mod, shape, s, chunks.gate, c) * y[e];
  });
  return out;
}

/** x * sigmoid(x). */
export function silu(x: ArrayLike<number>): Float32Array {
  return Float32Array.from(x, (v) => v / (1 + Math.exp(-v)));
}
