// Model-range images ([-1, 1], NCHW) to 8-bit PNG with fast-png (a maintained encoder: zlib and CRCs are not
// ours to get wrong).
import { encode } from "fast-png";

/** [-1, 1] -> 0..255, clamped; the training data was scaled the same way (x * 2 - 1). */
export function toByte(v: number): number {
  return Math.round(Math.min(1, Math.max(-1, v)) * 127.5 + 127.5);
}

/** Gray (1 channel) or RGB (3 channels) images laid side by side in `columns` columns. */
export function encodeImagesPng(
  images: Float32Array,
  shape: readonly [number, number, number, number],
  columns = shape[0],
): Uint8Array {
  const [count, channels, height, width] = shape;
  if (channels !== 1 && channels !== 3) throw new Error(`PNG needs 1 or 3 channels, images have ${channels}`);
  const rows = Math.ceil(count / columns);
  const W = columns * width;
  const data = new Uint8Array(rows * height * W * channels);
  for (let n = 0; n < count; n++) {
    const [gx, gy] = [(n % columns) * width, Math.floor(n / columns) * height];
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const v = images[((n * channels + c) * height + y) * width + x];
          data[((gy + y) * W + gx + x) * channels + c] = toByte(v);
        }
      }
    }
  }
  return encode({ width: W, height: rows * height, data, channels, depth: 8 });
}

/** [B, C, H, W] in [-1, 1] -> [B, H, W, C] in [0, 1], clamped: diffusers' output_type="np". */
export function toUnitHwc(
  images: Float32Array,
  shape: readonly [number, number, number, number],
): Float32Array {
  const [count, channels, height, width] = shape;
  const out = new Float32Array(images.length);
  for (let n = 0; n < count; n++) {
    for (let c = 0; c < channels; c++) {
      for (let p = 0; p < height * width; p++) {
        const v = images[(n * channels + c) * height * width + p] / 2 + 0.5;
        out[(n * height * width + p) * channels + c] = Math.min(1, Math.max(0, v));
      }
    }
  }
  return out;
}
