// CPU reference of src/ops/conv2d.ts: float64 sums over the window, rounded to f32 once per output.
import type { Conv2dGeometry } from "../ops/conv2d.ts";

/**
 * out [B, O, Ho, Wo] = bias + sum over (c, ky, kx) of w[o, c, ky, kx] * up(x)[b, c, y + ky - p, x + kx - p],
 * with up(x) the nearest-neighbour upsampling of x [B, C, H, W] by `upsample` and zeros outside; plus
 * `accumulateOnto` where given.
 */
export function conv2d(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  g: Conv2dGeometry,
  bias?: ArrayLike<number>,
  accumulateOnto?: ArrayLike<number>,
): Float32Array {
  const { batch, channels, height, width, outChannels, kernel, padding } = g;
  const up = g.upsample ?? 1;
  const [uh, uw] = [height * up, width * up];
  const [oh, ow] = [uh + 2 * padding - kernel + 1, uw + 2 * padding - kernel + 1];
  const out = new Float32Array(batch * outChannels * oh * ow);
  for (let b = 0; b < batch; b++) {
    for (let o = 0; o < outChannels; o++) {
      for (let y = 0; y < oh; y++) {
        for (let xo = 0; xo < ow; xo++) {
          let sum = bias ? bias[o] : 0;
          for (let c = 0; c < channels; c++) {
            for (let ky = 0; ky < kernel; ky++) {
              const iy = y + ky - padding;
              if (iy < 0 || iy >= uh) continue;
              for (let kx = 0; kx < kernel; kx++) {
                const ix = xo + kx - padding;
                if (ix < 0 || ix >= uw) continue;
                const v =
                  x[((b * channels + c) * height + Math.floor(iy / up)) * width + Math.floor(ix / up)];
                sum += w[((o * channels + c) * kernel + ky) * kernel + kx] * v;
              }
            }
          }
          const i = ((b * outChannels + o) * oh + y) * ow + xo;
          out[i] = accumulateOnto ? sum + accumulateOnto[i] : sum;
        }
      }
    }
  }
  return out;
}
