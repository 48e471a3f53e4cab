// Seeded standard-normal noise, generated on the CPU (a few thousand values per image) so that a seed means
// the same starting image on every adapter: mulberry32 uniforms, Box-Muller pairs.

export const MAX_SEED = 0xffff_ffff;

/** Uniforms in [0, 1) from a 32-bit seed: small, fast, and the same on every platform. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` N(0, 1) values from `seed`; the same (seed, count) always gives the same values. */
export function gaussianNoise(seed: number, count: number): Float32Array {
  const uniform = mulberry32(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - uniform())); // 1 - u is in (0, 1]: log never sees 0
    const angle = 2 * Math.PI * uniform();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

/** Image k of a request starts from seed + k, so any image can be regenerated alone. */
export function batchNoise(seed: number, images: number, perImage: number): Float32Array {
  const out = new Float32Array(images * perImage);
  for (let k = 0; k < images; k++) out.set(gaussianNoise((seed + k) >>> 0, perImage), k * perImage);
  return out;
}
