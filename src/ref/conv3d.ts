// CPU reference of src/ops/conv3d.ts: float64 sums over the window, rounded to f32 once per output.
import type { CausalConv3dGeometry } from "../ops/conv3d.ts";

/**
 * Frame-major x [T, B, C, H, W] after history [KT - 1, B, C, H, W] (the sequence s = [history, x]):
 * y[t, b, o] = bias[o] + sum over (c, kt, ky, kx) of w[o, c, kt, ky, kx] * s[t + kt, b, c, y + ky - p, x + kx - p]
 * (zeros outside the frame), written as out [T * split, B, O / split, Ho, Wo] with channel block s of y[t] in
 * frame t * split + s; plus `accumulateOnto` (of out's layout) where given.
 */
export function causalConv3d(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  g: CausalConv3dGeometry,
  history?: ArrayLike<number>,
  bias?: ArrayLike<number>,
  accumulateOnto?: ArrayLike<number>,
): Float32Array {
  const { frames, batch, channels, height, width, outChannels, kernel, temporalKernel: kt, padding, split } =
    g;
  const [oh, ow] = [height + 2 * padding - kernel + 1, width + 2 * padding - kernel + 1];
  const frame = batch * channels * height * width;
  const splitChannels = outChannels / split;
  // Value of sequence frame j, sample b, channel c, row iy, column ix.
  const input = (j: number, b: number, c: number, iy: number, ix: number) => {
    const at = ((b * channels + c) * height + iy) * width + ix;
    return j < kt - 1 ? history![j * frame + at] : x[(j - kt + 1) * frame + at];
  };
  const out = new Float32Array(frames * split * batch * splitChannels * oh * ow);
  for (let t = 0; t < frames; t++) {
    for (let b = 0; b < batch; b++) {
      for (let o = 0; o < outChannels; o++) {
        const s = Math.floor(o / splitChannels);
        for (let y = 0; y < oh; y++) {
          for (let xo = 0; xo < ow; xo++) {
            let sum = bias ? bias[o] : 0;
            for (let c = 0; c < channels; c++) {
              for (let dt = 0; dt < kt; dt++) {
                for (let ky = 0; ky < kernel; ky++) {
                  const iy = y + ky - padding;
                  if (iy < 0 || iy >= height) continue;
                  for (let kx = 0; kx < kernel; kx++) {
                    const ix = xo + kx - padding;
                    if (ix < 0 || ix >= width) continue;
                    const weight = w[(((o * channels + c) * kt + dt) * kernel + ky) * kernel + kx];
                    sum += weight * input(t + dt, b, c, iy, ix);
                  }
                }
              }
            }
            const image = (t * split + s) * batch + b;
            const i = ((image * splitChannels + o - s * splitChannels) * oh + y) * ow + xo;
            out[i] = accumulateOnto ? sum + accumulateOnto[i] : sum;
          }
        }
      }
    }
  }
  return out;
}
