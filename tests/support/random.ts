// Seeded inputs so every failure reproduces; the engine's own generator (src/pipeline/noise.ts).
import { gaussianNoise, mulberry32 } from "../../src/pipeline/noise.ts";

export const rng = mulberry32;

export function randn(size: number, seed: number, scale = 1): Float32Array {
  return gaussianNoise(seed, size).map((v) => v * scale);
}

export function uniform(size: number, seed: number, lo = -1, hi = 1): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: size }, () => lo + (hi - lo) * next());
}
