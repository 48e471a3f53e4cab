// Reproducible inputs without a seeded-generator dependency, and the error measure against a reference: shared
// by the start-up self-check (src/self_check/self_check.ts) and the kernel benchmarks (src/cli/bench/harness.ts).

/** `size` values in [-1, 1) from a linear congruential sequence started at `seed`: the same on every run. */
export function deterministicInput(size: number, seed: number): Float32Array<ArrayBuffer> {
  let s = seed >>> 0;
  return Float32Array.from({ length: size }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** max |a[i] - b[i]| over a's length; a NaN anywhere makes it NaN (Math.max keeps NaN), never a pass. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
