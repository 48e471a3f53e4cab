// CPU reference of src/ops/channel_rms_norm.ts, in float64.
import type { ChannelRmsNormGeometry } from "../ops/channel_rms_norm.ts";

/** x [N, C, S]: x / max(||x[n, :, s]||, eps) * sqrt(C) * gamma[c] + bias[c], then SiLU if asked. */
export function channelRmsNorm(
  x: ArrayLike<number>,
  g: ChannelRmsNormGeometry,
  gamma: ArrayLike<number>,
  bias?: ArrayLike<number>,
  silu = false,
): Float32Array {
  const { images, channels, spatial, eps } = g;
  const out = new Float32Array(x.length);
  for (let n = 0; n < images; n++) {
    for (let s = 0; s < spatial; s++) {
      const at = (c: number) => (n * channels + c) * spatial + s;
      let squares = 0;
      for (let c = 0; c < channels; c++) squares += x[at(c)] ** 2;
      const norm = Math.max(Math.sqrt(squares), eps);
      for (let c = 0; c < channels; c++) {
        let v = x[at(c)] / norm * Math.sqrt(channels) * gamma[c] + (bias ? bias[c] : 0);
        if (silu) v = v / (1 + Math.exp(-v));
        out[at(c)] = v;
      }
    }
  }
  return out;
}
