// CPU reference of src/ops/timestep_embedding.ts (diffusers get_timestep_embedding), entirely in float64.
import type { TimestepEmbeddingOptions } from "../ops/timestep_embedding.ts";

/** t [batch] -> [batch, dim] row-major, unrounded float64. */
export function timestepEmbedding(t: ArrayLike<number>, options: TimestepEmbeddingOptions): Float64Array {
  const { dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod } = options;
  const half = Math.floor(dim / 2);
  const out = new Float64Array(t.length * dim); // an odd dim leaves its last column 0
  for (let b = 0; b < t.length; b++) {
    for (let i = 0; i < half; i++) {
      const arg = scale * t[b] * Math.exp((-Math.log(maxPeriod) * i) / (half - downscaleFreqShift));
      out[b * dim + i] = flipSinToCos ? Math.cos(arg) : Math.sin(arg);
      out[b * dim + half + i] = flipSinToCos ? Math.sin(arg) : Math.cos(arg);
    }
  }
  return out;
}
