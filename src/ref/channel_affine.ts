// CPU reference of src/ops/channel_affine.ts, rounded to f32 once per element.

/** x [B, C, ...] -> x / divisor[c] + shift[c]. */
export function channelAffine(
  x: ArrayLike<number>,
  channels: number,
  plane: number,
  divisor: ArrayLike<number>,
  shift: ArrayLike<number>,
): Float32Array {
  return Float32Array.from(x, (v, i) => {
    const c = Math.floor(i / plane) % channels;
    return v / divisor[c] + shift[c];
  });
}
