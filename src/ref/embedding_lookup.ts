// CPU reference of src/ops/embedding_lookup.ts: a row gather, optionally added onto existing values with
// one f32 rounding per element, exactly as the kernel does.

/**
 * table [classes, channels], labels [batch] -> [batch, channels]; with `accumulateOnto` ([batch, channels])
 * the result is fround(accumulateOnto + row). Labels must be in range (the op validates them on upload).
 */
export function embeddingLookup(
  table: ArrayLike<number>,
  channels: number,
  labels: ArrayLike<number>,
  accumulateOnto?: ArrayLike<number>,
): Float32Array {
  const out = new Float32Array(labels.length * channels);
  for (let b = 0; b < labels.length; b++) {
    for (let c = 0; c < channels; c++) {
      const row = table[labels[b] * channels + c];
      out[b * channels + c] = accumulateOnto ? Math.fround(accumulateOnto[b * channels + c] + row) : row;
    }
  }
  return out;
}
