// AutoencoderKL's decoder against diffusers' vae.decode (tools/diffusers_fixtures.py), stage by stage: an
// SD-like config (post_quant_conv, 4 groups, two levels, non-square 5x7 latents, F32) and a FLUX-like one
// (no post_quant_conv, odd latent channels, three levels, 3 groups, BF16).
import { submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { parseConfig, readJsonFile } from "../../src/model/component_config.ts";
import { autoencoderKlConfigSchema } from "../../src/model/vae/config.ts";
import { AutoencoderKlDecoder } from "../../src/model/vae/decoder.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const FIXTURES = "tests/fixtures/diffusers";
// f32 on both sides from the same weights: GroupNorm statistics, conv sums and the softmax round differently;
// activations grow to ~10 through the blocks, so the bound is relative too. A wrong tap or group is off by ~1.
const TOL = { atol: 2e-4, rtol: 2e-4 };

for (const name of ["a", "b"]) {
  gpuTest(`AutoencoderKL decoder ${name} matches diffusers' decode after every stage`, async (ctx) => {
    const dir = `${FIXTURES}/vae-${name}`;
    const config = parseConfig(
      `${dir}/config.json`,
      await readJsonFile(`${dir}/config.json`),
      autoencoderKlConfigSchema,
    );
    const vae = await AutoencoderKlDecoder.load(ctx, dir, config);
    const fixture = await readFixture(`${FIXTURES}/vae-${name}-decode.safetensors`);
    const zShape = fixture.tensors.get("z")!.shape as [number, number, number, number];
    const graph = vae.graph(zShape);
    ctx.pool.write(graph.z, fixtureTensor(fixture, "z"));
    await ctx.kernels.ready();
    let done = 0;
    for (const { name: stage, tensor, after } of graph.stages) {
      submitDispatches(ctx.gpu, graph.commands.slice(done, after));
      done = after;
      assertClose(await readFloats(ctx.gpu, tensor), fixtureTensor(fixture, stage), TOL, stage);
    }
    submitDispatches(ctx.gpu, graph.commands.slice(done));
    assertClose(await readFloats(ctx.gpu, graph.output), fixtureTensor(fixture, "sample"), TOL, "sample");
    vae.release();
  });
}
