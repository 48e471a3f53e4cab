// FluxTransformer2DModel against diffusers' own forward (tools/flux_fixtures.py), stage by stage: both
// embedders and temb after the prologue, both streams after every double- and single-stream block, the final
// modulated norm and output.sample. Two configs: dev (guidance embeddings, BF16) and schnell (none, F32).
import { parseConfig, readJsonFile } from "../../src/model/component_config.ts";
import { fluxTransformerConfigSchema } from "../../src/model/flux/config.ts";
import { FluxTransformer } from "../../src/model/flux/transformer.ts";
import { readFixture } from "../support/fixtures.ts";
import { checkFluxStages } from "../support/flux_stages.ts";
import { gpuTest } from "../support/gpu.ts";

const FIXTURES = "tests/fixtures/flux";
// f32 on both sides from the same (rounded) weights, unit-scale activations: summation order, tanh and the
// online softmax differ. A wrong chunk order, stream or rotation is off by >= 1e-2.
const TOL = { atol: 2e-4, rtol: 2e-4 };

const GRIDS: Record<string, [number, number]> = { dev: [2, 3], schnell: [3, 2] };

for (const name of ["dev", "schnell"]) {
  gpuTest(`FluxTransformer2DModel ${name} matches diffusers after every stage`, async (ctx) => {
    const dir = `${FIXTURES}/transformer-${name}`;
    const config = parseConfig(
      `${dir}/config.json`,
      await readJsonFile(`${dir}/config.json`),
      fluxTransformerConfigSchema,
    );
    const model = await FluxTransformer.load(ctx, dir, config);
    const fixture = await readFixture(`${dir}-forward.safetensors`);
    const [batch, textTokens] = fixture.tensors.get("encoder_hidden_states")!.shape;
    const [gridHeight, gridWidth] = GRIDS[name];
    const graph = model.graph({ batch, gridHeight, gridWidth, textTokens });
    await checkFluxStages(ctx, graph, fixture, config.num_layers, TOL);
    model.release();
  });
}
