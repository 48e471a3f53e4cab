// The tiled decode against diffusers' enable_tiling() decode of the same latents (tools/diffusers_fixtures.py):
// 12 x 21 latents in overlapping 8 x 8 tiles (the last row and column narrower), blended and cropped.
import assert from "node:assert/strict";
import { parseConfig, readJsonFile } from "../../src/model/component_config.ts";
import { autoencoderKlConfigSchema } from "../../src/model/vae/config.ts";
import { AutoencoderKlDecoder } from "../../src/model/vae/decoder.ts";
import { decodeTiled, largestActivationBytes, tileSizes } from "../../src/model/vae/tiled_decode.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "tests/fixtures/diffusers/vae-a";
// As the untiled decode (tests/model/vae_decoder_test.ts); the blend adds one f32 rounding.
const TOL = { atol: 2e-4, rtol: 2e-4 };

gpuTest("tiled AutoencoderKL decode matches diffusers' tiled decode", async (ctx) => {
  const config = parseConfig(
    `${DIR}/config.json`,
    await readJsonFile(`${DIR}/config.json`),
    autoencoderKlConfigSchema,
  );
  const fixture = await readFixture("tests/fixtures/diffusers/vae-a-tiled-decode.safetensors");
  const sizes = tileSizes(config);
  assert.deepEqual(sizes, {
    latent: Number(fixture.metadata.tile_latent_min_size),
    sample: Number(fixture.metadata.tile_sample_min_size),
  });
  const vae = await AutoencoderKlDecoder.load(ctx, DIR, config);
  const z = fixture.tensors.get("z")!;
  const decoded = await decodeTiled(ctx, vae, {
    data: z.data,
    shape: z.shape as [number, number, number, number],
  });
  assert.deepEqual(decoded.shape, fixture.tensors.get("sample")!.shape);
  assertClose(decoded.data, fixtureTensor(fixture, "sample"), TOL, "sample");
  vae.release();
});

Deno.test("the decode is tiled when its largest activation would pass one binding: SD's VAE at 1024 px", () => {
  const sd = autoencoderKlConfigSchema.parse({
    _class_name: "AutoencoderKL",
    block_out_channels: [128, 256, 512, 512],
    up_block_types: new Array(4).fill("UpDecoderBlock2D"),
    layers_per_block: 2,
  });
  // The third up block's upsampler writes 256 channels at full resolution: 256 x 1024^2 x 4 bytes.
  assert.equal(largestActivationBytes(sd, [1, 4, 128, 128]), 256 * 1024 ** 2 * 4);
  assert.equal(largestActivationBytes(sd, [2, 4, 32, 32]), 2 * 256 * 256 ** 2 * 4);
});
