// The Wan decoder's FLOP count that bench:wan divides by the decode's seconds.
import assert from "node:assert/strict";
import { wanVaeConfigSchema } from "../../src/model/wan_vae/config.ts";
import { wanVaeDecodeFlops } from "../../src/model/wan_vae/flops.ts";

Deno.test("Wan VAE decode FLOPs: a one-block decoder counted by hand", () => {
  const c = wanVaeConfigSchema.parse({
    _class_name: "AutoencoderKLWan",
    base_dim: 4,
    z_dim: 4,
    dim_mult: [1],
    num_res_blocks: 1,
    temperal_downsample: [],
    latents_mean: [0, 0, 0, 0],
    latents_std: [1, 1, 1, 1],
    scale_factor_spatial: 1,
    scale_factor_temporal: 1,
  });
  // 2 x 2 latents, one frame: conv_in 4->4 (27 taps), two mid resnets of two convs, the mid attention's
  // projections (4 -> 16 per pixel) and QK^T, AV over 4 pixels, the up block's two resnets, the head 4 -> 3.
  const conv = (i: number, o: number) => 2 * i * o * 27 * 4;
  const attention = 2 * 4 * 16 * 4 + 2 * 2 * 4 * 4 * 4;
  const expected = conv(4, 4) + 4 * conv(4, 4) + attention + 4 * conv(4, 4) + conv(4, 3);
  assert.equal(wanVaeDecodeFlops(c, [1, 4, 1, 2, 2]), expected);
  assert.equal(wanVaeDecodeFlops(c, [3, 4, 1, 2, 2]), 3 * expected);
});

Deno.test("Wan VAE decode FLOPs: Wan2.1's decoder at 320x192, 9 frames, is 4.8 TFLOP", () => {
  const c = wanVaeConfigSchema.parse({ _class_name: "AutoencoderKLWan" });
  const flops = wanVaeDecodeFlops(c, [1, 16, 3, 24, 40]);
  assert.ok(Math.abs(flops / 1e12 - 4.815) < 1e-3, `${flops / 1e12} TFLOP`);
});
