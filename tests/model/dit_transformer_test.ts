// DiTTransformer2DModel against diffusers' own forward (tools/diffusers_fixtures.py), stage by stage: after
// the patch embedding, after every block, the final modulated norm and output.sample. Two configs: learned
// sigma with 1000 classes and two heads in BF16; odd channels, three heads, patch 3 and an affine norm3 with
// its own eps in F16.
import { submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { parseConfig, readJsonFile } from "../../src/model/component_config.ts";
import { ditTransformerConfigSchema } from "../../src/model/dit/config.ts";
import { DitTransformer } from "../../src/model/dit/transformer.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const FIXTURES = "tests/fixtures/diffusers";
// f32 on both sides from the same rounded weights; summation order, tanh and the online softmax differ. A
// wrong chunk, sign or layout is off by >= 1e-2 on these unit-scale activations.
const TOL = { atol: 1e-4, rtol: 1e-4 };

for (const name of ["a", "b"]) {
  gpuTest(`DiTTransformer2DModel ${name} matches diffusers after every stage`, async (ctx) => {
    const dir = `${FIXTURES}/dit-${name}/transformer`;
    const config = parseConfig(
      `${dir}/config.json`,
      await readJsonFile(`${dir}/config.json`),
      ditTransformerConfigSchema,
    );
    const model = await DitTransformer.load(ctx, dir, config);
    const fixture = await readFixture(`${FIXTURES}/dit-${name}-forward.safetensors`);
    const batch = fixture.tensors.get("hidden_states")!.shape[0];
    const graph = model.graph(batch);
    ctx.pool.write(graph.x, fixtureTensor(fixture, "hidden_states"));
    ctx.pool.write(graph.t, fixtureTensor(fixture, "timestep"));
    ctx.pool.write(graph.labels, Uint32Array.from(fixtureTensor(fixture, "class_labels")));
    await ctx.kernels.ready();
    submitDispatches(ctx.gpu, graph.prologue);
    assertClose(
      await readFloats(ctx.gpu, graph.hidden),
      fixtureTensor(fixture, "pos_embed"),
      TOL,
      "pos_embed",
    );
    for (const [k, block] of graph.blocks.entries()) {
      submitDispatches(ctx.gpu, block);
      assertClose(
        await readFloats(ctx.gpu, graph.hidden),
        fixtureTensor(fixture, `block.${k}`),
        TOL,
        `block.${k}`,
      );
    }
    submitDispatches(ctx.gpu, graph.epilogue);
    assertClose(
      await readFloats(ctx.gpu, graph.stages!.norm_out),
      fixtureTensor(fixture, "norm_out"),
      TOL,
      "norm_out",
    );
    assertClose(await readFloats(ctx.gpu, graph.output), fixtureTensor(fixture, "sample"), TOL, "sample");
    model.release();
  });
}
