// denoise() (src/pipeline/generate.ts) with Wan's UniPC schedule keeps the x0 ring and the last sample between
// steps: a stand-in model (output = slope * x + offset, the offset a conditioning input) replays the guided run
// of tools/unipc_fixtures.py on the GPU, CFG batched and as two passes (Wan's), and every step's latents must
// be diffusers' prev_sample.
import { parsePythonJson } from "../../src/model/component_config.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import type { Tensor } from "../../src/gpu/tensor.ts";
import type { DenoiserGraph } from "../../src/model/denoiser_graph.ts";
import { axpy } from "../../src/ops/axpy.ts";
import { denoise } from "../../src/pipeline/generate.ts";
import { createSchedule } from "../../src/pipeline/schedulers/schedule.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const FIXTURE = "tests/fixtures/wan/scheduler-unipc-wan-shift3-guided-fixed-offset.safetensors";
// Samples up to ~9 after 8 guided steps; the kernel rounds each of its ~15 terms in f32 where diffusers rounds
// its own way (measured: 1.4e-6 at worst, by step 6). The corrector's x0s swapped move the latents by 7e-3.
const TOL = { atol: 2e-5, rtol: 2e-5 };

/** Graphs of the stand-in model, one per batch size, each output = slope * x + offset. */
function fakeDenoiser(ctx: GpuContext, latentShape: readonly number[], slope: number) {
  const graphs = new Map<number, DenoiserGraph>();
  return {
    graph(batch: number): DenoiserGraph {
      const cached = graphs.get(batch);
      if (cached) return cached;
      const shape = [batch, ...latentShape];
      const [x, offset, output] = [ctx.pool.tensor(shape), ctx.pool.tensor(shape), ctx.pool.tensor(shape)];
      const t = ctx.pool.tensor([batch]);
      const op = axpy(ctx, x, offset, { alpha: slope, beta: 1, out: output });
      const graph: DenoiserGraph = {
        batch,
        x,
        t,
        inputs: { offset },
        hidden: output,
        prologue: [],
        blocks: [],
        epilogue: op.dispatches,
        output,
        release() {
          op.release();
          for (const tensor of [x, offset, output, t]) tensor.release();
        },
      };
      graphs.set(batch, graph);
      return graph;
    },
    release() {
      for (const graph of graphs.values()) graph.release();
    },
  };
}

for (const cfgPasses of ["batched", "separate"] as const) {
  gpuTest(`denoise with Wan's UniPC, CFG ${cfgPasses}: every step's latents are diffusers'`, async (ctx) => {
    const fixture = await readFixture(FIXTURE);
    const initial = fixture.tensors.get("initial")!;
    const [images, ...latentShape] = initial.shape;
    const config = {
      _class_name: fixture.metadata.class,
      ...parsePythonJson(fixture.metadata.config) as object,
    };
    const steps = Number(fixture.metadata.steps);
    const schedule = createSchedule(FIXTURE, config, steps);
    const fake = fakeDenoiser(ctx, latentShape, Number(fixture.metadata.model_slope));
    const seen: number[] = [];
    const read = async (latents: Tensor, recorder: { read(t: Tensor): Promise<Float32Array> }) => {
      const values = await recorder.read(latents);
      assertClose(values, fixtureTensor(fixture, `prev_sample.${seen.length}`), TOL, `step ${seen.length}`);
      seen.push(seen.length);
      return {
        images: values,
        shape: [images, 1, 1, values.length / images] as [number, number, number, number],
      };
    };
    const { latents, recorder } = await denoise(
      ctx,
      {
        denoiser: fake,
        schedule,
        latentShape,
        images,
        inputs: { offset: fixtureTensor(fixture, "offset.0") },
        guidance: Number(fixture.metadata.guidance_scale),
        cfgPasses,
        seed: 0,
        latents: initial.data,
      },
      { previews: { after: Array.from({ length: steps - 1 }, (_, i) => i), onPreview: () => {} } },
      read,
    );
    await read(latents, recorder);
    assertClose(seen, Array.from({ length: steps }, (_, i) => i), { atol: 0, rtol: 0 }, "steps checked");
    latents.release();
    fake.release();
  });
}
