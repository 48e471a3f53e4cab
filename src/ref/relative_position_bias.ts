// CPU reference of src/ops/relative_position_bias.ts: the table gathered per (head, query, key) offset, and
// the padding keys masked, exactly as the kernel writes them.

/** The kernel's score for a masked (padding) key: shaders/relative_position_bias.wgsl's MASKED_SCORE. */
export const MASKED_SCORE = Math.fround(-1e30);

/**
 * table [buckets, heads], bucket [2L - 1] (of offset j - i, from -(L - 1)), keys in 1..L ->
 * [heads, L, L] with out[h, i, j] = table[bucket[j - i + L - 1], h] for j < keys, else MASKED_SCORE.
 */
export function relativePositionBias(
  table: ArrayLike<number>,
  heads: number,
  bucket: ArrayLike<number>,
  keys: number,
): Float32Array {
  const length = (bucket.length + 1) / 2;
  const out = new Float32Array(heads * length * length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < length; i++) {
      for (let j = 0; j < length; j++) {
        out[(h * length + i) * length + j] = j < keys
          ? table[bucket[j - i + length - 1] * heads + h]
          : MASKED_SCORE;
      }
    }
  }
  return out;
}
