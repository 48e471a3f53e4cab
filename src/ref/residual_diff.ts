// CPU reference of src/ops/residual_diff.ts, accumulated in float64.
import type { ResidualDiffOptions } from "../ops/residual_diff.ts";

function ratio(absDiff: number, absRef: number): number {
  if (absRef === 0) return absDiff === 0 ? 0 : 1e30;
  return absDiff / absRef;
}

/** Returns [overall, ...perSample] like the GPU result tensor; `channels` is the last dimension. */
export function residualDiff(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  channels: number,
  options: ResidualDiffOptions = {},
): number[] {
  return residualMeans(a, b, channels, options).map(([diff, ref]) => ratio(diff, ref));
}

/** [mean|a - b|, mean|a|] overall, then per sample, over the visited elements: the GPU `means` tensor. */
export function residualMeans(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  channels: number,
  options: ResidualDiffOptions = {},
): [number, number][] {
  const samples = options.samples ?? 1;
  const stride = options.downsample ?? 1;
  const perSample = a.length / samples;
  const out: [number, number][] = [];
  let [totalDiff, totalRef, visited] = [0, 0, 0];
  for (let s = 0; s < samples; s++) {
    let [diff, ref, count] = [0, 0, 0];
    for (let i = s * perSample; i < (s + 1) * perSample; i++) {
      if ((i % channels) % stride !== 0) continue;
      diff += Math.abs(a[i] - b[i]);
      ref += Math.abs(a[i]);
      count++;
    }
    out.push([diff / count, ref / count]);
    totalDiff += diff;
    totalRef += ref;
    visited += count;
  }
  return [[totalDiff / visited, totalRef / visited], ...out];
}
