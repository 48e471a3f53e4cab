// CPU reference of src/ops/patch.ts: the same gathers written as loops over the output.
import type { Im2colGeometry, PatchGeometry } from "../ops/patch.ts";

/** Index of pixel (b, c, y, x) in an image batch of `layout`. */
function pixelIndex(g: Im2colGeometry, b: number, c: number, y: number, x: number): number {
  const { channels, height, width } = g;
  return g.layout === "nhwc"
    ? ((b * height + y) * width + x) * channels + c
    : ((b * channels + c) * height + y) * width + x;
}

/** [B, Ho*Wo, C*k*k]: row (b, oy, ox) holds the window at (oy*s - p, ox*s - p), ordered (c, ky, kx). */
export function im2col(x: ArrayLike<number>, g: Im2colGeometry): Float32Array {
  const { batch, channels, height, width, kernel, stride, padding } = g;
  const outHeight = Math.floor((height + 2 * padding - kernel) / stride) + 1;
  const outWidth = Math.floor((width + 2 * padding - kernel) / stride) + 1;
  const out = new Float32Array(batch * outHeight * outWidth * channels * kernel * kernel);
  let o = 0;
  for (let b = 0; b < batch; b++) {
    for (let oy = 0; oy < outHeight; oy++) {
      for (let ox = 0; ox < outWidth; ox++) {
        for (let c = 0; c < channels; c++) {
          for (let ky = 0; ky < kernel; ky++) {
            for (let kx = 0; kx < kernel; kx++, o++) {
              const y = oy * stride + ky - padding;
              const xx = ox * stride + kx - padding;
              const inside = y >= 0 && y < height && xx >= 0 && xx < width;
              out[o] = inside ? x[pixelIndex(g, b, c, y, xx)] : 0;
            }
          }
        }
      }
    }
  }
  return out;
}

/** tokens [B, (H/p)*(W/p), C*p*p] with vectors ordered (c, py, px) -> [B, C, H, W]. */
export function unpatchify(tokens: ArrayLike<number>, g: PatchGeometry): Float32Array {
  const { batch, channels, height, width, patch } = g;
  const columns = width / patch;
  const depth = channels * patch * patch;
  const out = new Float32Array(batch * channels * height * width);
  let o = 0;
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++, o++) {
          const token = Math.floor(y / patch) * columns + Math.floor(x / patch);
          const j = g.order === "channels_last"
            ? ((y % patch) * patch + (x % patch)) * channels + c
            : (c * patch + (y % patch)) * patch + (x % patch);
          out[o] = tokens[(b * (height / patch) * columns + token) * depth + j];
        }
      }
    }
  }
  return out;
}
