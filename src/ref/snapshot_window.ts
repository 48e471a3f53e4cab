// CPU reference of src/ops/snapshot_window.ts in float64: ring [slots, items, size] flat.

export interface WindowDims {
  slots: number;
  items: number;
  size: number;
}

const at = (ring: ArrayLike<number>, d: WindowDims, slot: number, item: number, e: number) =>
  ring[(slot * d.items + item) * d.size + e];

/** [items * slots]: per item, the dot of slot `newest` with every slot; NaN where either holds inf or NaN. */
export function snapshotGram(ring: ArrayLike<number>, d: WindowDims, newest: number): Float64Array {
  const out = new Float64Array(d.items * d.slots);
  for (let item = 0; item < d.items; item++) {
    for (let slot = 0; slot < d.slots; slot++) {
      let sum = 0;
      let finite = true;
      for (let e = 0; e < d.size; e++) {
        const [a, c] = [at(ring, d, newest, item, e), at(ring, d, slot, item, e)];
        finite &&= Number.isFinite(a) && Number.isFinite(c);
        sum += a * c;
      }
      out[item * d.slots + slot] = finite ? sum : NaN;
    }
  }
  return out;
}

/** base + sum_j weights[item, j] * ring[j, item] ([items * size]; base null: 0); weight-0 slots unread. */
export function snapshotCombination(
  ring: ArrayLike<number>,
  d: WindowDims,
  weights: ArrayLike<number>,
  base: ArrayLike<number> | null,
): Float64Array {
  const out = base ? Float64Array.from(base) : new Float64Array(d.items * d.size);
  for (let item = 0; item < d.items; item++) {
    for (let slot = 0; slot < d.slots; slot++) {
      const w = weights[item * d.slots + slot];
      if (w === 0) continue;
      for (let e = 0; e < d.size; e++) out[item * d.size + e] += w * at(ring, d, slot, item, e);
    }
  }
  return out;
}
