// One FluxTransformer2DModel forward checked against a diffusers fixture stage by stage (as
// tools/flux_fixtures.py's forward_stages records them): both embedders and temb after the prologue, both
// streams after every double- and single-stream block, the final modulated norm and output.sample.
import type { GpuContext } from "../../src/gpu/context.ts";
import { submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import type { Tensor } from "../../src/gpu/tensor.ts";
import type { DenoiserGraph } from "../../src/model/denoiser_graph.ts";
import { assertClose, type Tolerance } from "./assert_close.ts";
import { type Fixture, fixtureTensor } from "./fixtures.ts";

export async function checkFluxStages(
  ctx: GpuContext,
  graph: DenoiserGraph,
  fixture: Fixture,
  doubleBlocks: number,
  tolerance: Tolerance,
): Promise<void> {
  ctx.pool.write(graph.x, fixtureTensor(fixture, "hidden_states"));
  ctx.pool.write(graph.t, fixtureTensor(fixture, "timestep"));
  for (const [input, tensor] of Object.entries(graph.inputs!)) {
    ctx.pool.write(tensor, fixtureTensor(fixture, input));
  }
  await ctx.kernels.ready();
  const check = async (stage: string, tensor: Tensor) =>
    assertClose(await readFloats(ctx.gpu, tensor), fixtureTensor(fixture, stage), tolerance, stage);
  submitDispatches(ctx.gpu, graph.prologue);
  await check("x_embedder", graph.streams!.image);
  await check("context_embedder", graph.streams!.text);
  await check("temb", graph.stages!.temb);
  for (const [k, block] of graph.blocks.entries()) {
    submitDispatches(ctx.gpu, block);
    const stage = k < doubleBlocks ? `double.${k}` : `single.${k - doubleBlocks}`;
    await check(`${stage}.image`, graph.streams!.image);
    await check(`${stage}.text`, graph.streams!.text);
  }
  submitDispatches(ctx.gpu, graph.epilogue);
  await check("norm_out", graph.stages!.norm_out);
  await check("sample", graph.output);
}
