// CPU reference of src/ops/group_norm.ts, in float64.
import type { GroupNormGeometry } from "../ops/group_norm.ts";

/** PyTorch GroupNorm over x [B, C, ...]: per (sample, group) mean and biased variance, then affine; SiLU after. */
export function groupNorm(
  x: ArrayLike<number>,
  g: GroupNormGeometry,
  weight?: ArrayLike<number>,
  bias?: ArrayLike<number>,
  silu = false,
): Float32Array {
  const { batch, channels, groups, eps } = g;
  const spatial = x.length / (batch * channels);
  const perGroup = (channels / groups) * spatial;
  const out = new Float32Array(x.length);
  for (let s = 0; s < batch * groups; s++) {
    const start = s * perGroup;
    let mean = 0;
    for (let i = 0; i < perGroup; i++) mean += x[start + i] / perGroup;
    let variance = 0;
    for (let i = 0; i < perGroup; i++) variance += (x[start + i] - mean) ** 2 / perGroup;
    const rstd = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < perGroup; i++) {
      const c = Math.floor((start + i) / spatial) % channels;
      let v = (x[start + i] - mean) * rstd * (weight ? weight[c] : 1) + (bias ? bias[c] : 0);
      if (silu) v = v / (1 + Math.exp(-v));
      out[start + i] = v;
    }
  }
  return out;
}
