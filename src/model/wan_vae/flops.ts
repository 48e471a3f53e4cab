// The Wan2.1 decoder's convolution FLOPs for one latent video, for benchmark reports (GFLOP/s of a decode):
// 2 x C_in x C_out x taps per output element of every causal 3-D and per-frame 2-D convolution, the mid
// attention's two matmuls per frame; norms and element-wise work are left out. Frames follow the decoder: each
// "3d" upsample doubles every frame but the first, as its time_conv does chunk by chunk.
import { decoderDims, upBlocks, type WanVaeConfig } from "./config.ts";

const conv = (inC: number, outC: number, taps: number, pixels: number, frames: number) =>
  2 * inC * outC * taps * pixels * frames;

/** FLOPs of decoding latents [B, z_dim, F, h, w]. */
export function wanVaeDecodeFlops(c: WanVaeConfig, latents: readonly number[]): number {
  const [batch, , latentFrames, h, w] = latents;
  const dims = decoderDims(c);
  let [frames, pixels] = [latentFrames, h * w];
  const resnet = (inC: number, outC: number) =>
    conv(inC, outC, 27, pixels, frames) + conv(outC, outC, 27, pixels, frames) +
    (inC !== outC ? conv(inC, outC, 1, pixels, frames) : 0);
  // The mid attention per frame: q, k, v and out projections, then QK^T and AV over the frame's pixels.
  const attention = conv(dims[0], 4 * dims[0], 1, pixels, frames) +
    2 * 2 * pixels * pixels * dims[0] * frames;
  let flops = conv(c.z_dim, dims[0], 27, pixels, frames) + 2 * resnet(dims[0], dims[0]) + attention;
  for (const block of upBlocks(c)) {
    for (let r = 0; r <= c.num_res_blocks; r++) {
      flops += resnet(r === 0 ? block.inChannels : block.outChannels, block.outChannels);
    }
    if (block.upsample === "3d") {
      flops += conv(block.outChannels, 2 * block.outChannels, 3, pixels, frames - 1);
      frames = 1 + 2 * (frames - 1);
    }
    if (block.upsample !== null) {
      pixels *= 4;
      flops += conv(block.outChannels, block.outChannels / 2, 9, pixels, frames);
    }
  }
  return batch * (flops + conv(dims[dims.length - 1], 3, 27, pixels, frames));
}
