// AutoencoderKLWan's config.json schema: Wan2.1's published config, diffusers' defaults, the decoder's plan
// derived from it, and what the engine refuses (Wan2.2's VAE by name, inconsistent lists), naming the field.
import assert from "node:assert/strict";
import { parseConfig } from "../../src/model/component_config.ts";
import { WeightsError } from "../../src/model/safetensors.ts";
import {
  decoderDims,
  upBlocks,
  type WanVaeConfig,
  wanVaeConfigSchema,
  wanVaeScale,
} from "../../src/model/wan_vae/config.ts";
import { decoderShapes } from "../../src/model/wan_vae/decoder.ts";

// vae/config.json of Wan-AI/Wan2.1-T2V-1.3B-Diffusers (latents_mean / latents_std are diffusers' defaults).
const WAN21 = {
  _class_name: "AutoencoderKLWan",
  _diffusers_version: "0.33.0.dev0",
  attn_scales: [],
  base_dim: 96,
  dim_mult: [1, 2, 4, 4],
  dropout: 0.0,
  num_res_blocks: 2,
  temperal_downsample: [false, true, true],
  z_dim: 16,
};

const parse = (json: unknown): WanVaeConfig => parseConfig("vae/config.json", json, wanVaeConfigSchema);

function refuses(json: unknown, pattern: RegExp): void {
  assert.throws(() => parse(json), (e: unknown) => e instanceof WeightsError && pattern.test(e.message));
}

Deno.test("wan vae config: Wan2.1's config and diffusers' defaults give the same decoder", () => {
  const c = parse(WAN21);
  const { _diffusers_version: _, ...fields } = c;
  assert.deepEqual(parse({ _class_name: "AutoencoderKLWan" }), fields);
  assert.equal(c.latents_mean.length, 16);
  assert.equal(c.latents_std[0], 2.8184);
  assert.deepEqual(decoderDims(c), [384, 384, 384, 192, 96]);
  assert.deepEqual(upBlocks(c), [
    { inChannels: 384, outChannels: 384, upsample: "3d" },
    { inChannels: 192, outChannels: 384, upsample: "3d" },
    { inChannels: 192, outChannels: 192, upsample: "2d" },
    { inChannels: 96, outChannels: 96, upsample: null },
  ]);
  assert.deepEqual(wanVaeScale(c), { spatial: 8, temporal: 4 });
  const shapes = decoderShapes(c);
  assert.deepEqual(shapes.get("decoder.up_blocks.1.resnets.0.conv_shortcut.weight"), [384, 192, 1, 1, 1]);
  assert.deepEqual(shapes.get("decoder.up_blocks.1.upsamplers.0.time_conv.weight"), [768, 384, 3, 1, 1]);
  assert.deepEqual(shapes.get("decoder.up_blocks.2.upsamplers.0.resample.1.weight"), [96, 192, 3, 3]);
  assert.equal(shapes.has("decoder.up_blocks.2.upsamplers.0.time_conv.weight"), false);
  assert.deepEqual(shapes.get("decoder.conv_out.weight"), [3, 96, 3, 3, 3]);
  // Wan2.1's decoder: 73.3M parameters, as in diffusers' count (post_quant_conv included).
  const parameters = [...shapes.values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
  assert.equal(parameters, 73_295_603);
});

Deno.test("wan vae config: the temporal flags are reversed for the decoder, and the scale follows them", () => {
  const c = parse({ ...WAN21, dim_mult: [1, 2, 2], temperal_downsample: [true, false], decoder_base_dim: 8 });
  assert.deepEqual(upBlocks(c).map((b) => b.upsample), ["2d", "3d", null]);
  assert.deepEqual(decoderDims(c), [16, 16, 16, 8]);
  assert.deepEqual(wanVaeScale(c), { spatial: 4, temporal: 2 });
});

Deno.test("wan vae config: Wan2.2's VAE and inconsistent configs are refused, naming the field", () => {
  refuses({ ...WAN21, is_residual: true }, /is_residual: is_residual true is the Wan2\.2 VAE/);
  refuses({ ...WAN21, patch_size: 2 }, /patch_size: patch_size other than null is the Wan2\.2 VAE/);
  refuses(
    { ...WAN21, temperal_downsample: [false, true] },
    /temperal_downsample: must have one entry per dim_mult level but the last \(3\), has 2/,
  );
  refuses({ ...WAN21, latents_std: [1, 2, 3] }, /latents_std: must have z_dim = 16 entries, has 3/);
  refuses({ ...WAN21, z_dim: 4 }, /latents_mean: must have z_dim = 4 entries, has 16/);
  refuses(
    { ...WAN21, base_dim: 130 },
    /base_dim: \(decoder_base_dim or base_dim\) \* dim_mult\[-1\] = 520, .* up to 512/,
  );
  refuses(
    { ...WAN21, decoder_base_dim: 129 },
    /decoder_base_dim: \(decoder_base_dim or base_dim\) \* dim_mult\[-1\] = 516/,
  );
  refuses({ ...WAN21, scale_factor_spatial: null }, /scale_factor_spatial/);
  refuses({ ...WAN21, _class_name: "AutoencoderKL" }, /_class_name/);
});
