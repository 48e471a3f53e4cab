// deno task bench:pipeline --model DIR [--python PYTHON] [--diffusers-src DIR] [--repeat 1] [--json]
// A DiTPipeline directory at full size (tools/dit_random_pipeline.py writes DiT-XL/2-256 with random BF16
// weights): one guided transformer step (batch 2: the conditional and unconditional halves) and the VAE
// decode of one [1, 4, h, w] latent, timed on this adapter as whole submits waited on; the model's GFLOP/s
// next to the matmul kernel's in the same run; the GPU memory the weights hold against the checkpoint's
// bytes on disk; and, with --python, the same forward and decode in diffusers on PyTorch (CPU), from the same
// weights in the same run, as a ratio.
import { parseArgs } from "node:util";
import type { GpuContext } from "../gpu/context.ts";
import { gaussianNoise } from "../pipeline/noise.ts";
import { latentShape, readModelCard } from "../pipeline/model_card.ts";
import { DitPipeline } from "../pipeline/pipelines/dit.ts";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { matmulKernelGflops, modelSeconds } from "./bench/harness.ts";
import { pythonReference } from "./bench/python_reference.ts";

interface Reference {
  transformer_step_seconds: number;
  vae_decode_seconds: number;
  torch: string;
  threads: number;
}

async function checkpointBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".safetensors")) {
      total += (await Deno.stat(`${dir}/${entry.name}`)).size;
    }
  }
  return total;
}

/** Seconds of one guided step (prologue, every block, epilogue) at batch 2. */
async function stepSeconds(ctx: GpuContext, pipeline: DitPipeline, repeat: number): Promise<number> {
  const graph = pipeline.transformer.graph(2);
  ctx.pool.write(graph.x, gaussianNoise(1, graph.x.size));
  ctx.pool.write(graph.t, new Float32Array([500, 500]));
  ctx.pool.write(graph.labels, Uint32Array.from([207, pipeline.card.classes.nullClass]));
  const commands = [...graph.prologue, ...graph.blocks.flat(), ...graph.epilogue];
  return await modelSeconds(ctx, commands, repeat);
}

async function decodeSeconds(ctx: GpuContext, pipeline: DitPipeline, repeat: number): Promise<number> {
  const [c, h, w] = latentShape(pipeline.card, pipeline.card.size);
  const graph = pipeline.vae.graph([1, c, h, w]);
  ctx.pool.write(graph.z, gaussianNoise(2, graph.z.size));
  return await modelSeconds(ctx, graph.commands, repeat);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string" },
      python: { type: "string" },
      "diffusers-src": { type: "string" },
      repeat: { type: "string", default: "1" },
      json: { type: "boolean", default: false },
    },
  });
  const repeat = Number(values.repeat);
  if (!values.model || !Number.isInteger(repeat) || repeat < 1) {
    console.error(
      "usage: deno task bench:pipeline --model DIR [--python PYTHON] [--diffusers-src DIR] [--repeat N] [--json]",
    );
    return 2;
  }
  const card = await readModelCard(values.model);
  if (card.pipeline !== "DiTPipeline") {
    console.error(
      `${values.model}: bench:pipeline measures DiTPipeline directories, this is ${card.pipeline}`,
    );
    return 2;
  }
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const loadStarted = performance.now();
  const pipeline = await DitPipeline.load(ctx, card);
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  const step = await stepSeconds(ctx, pipeline, repeat);
  const decode = await decodeSeconds(ctx, pipeline, repeat);
  const kernel = await matmulKernelGflops(ctx);
  const torch = values.python
    ? await pythonReference<Reference>(
      values.python,
      values["diffusers-src"],
      "tools/dit_random_pipeline.py",
      ["--bench", values.model, "--repeat", String(repeat)],
    )
    : null;
  const stepGflops = (2 * pipeline.flopsPerSample) / step / 1e9;
  const report = {
    adapter: `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`,
    model: values.model,
    loadSeconds,
    guidedStepSeconds: step,
    stepGflops,
    matmulKernelGflops: kernel,
    stepShareOfKernel: stepGflops / kernel,
    vaeDecodeSeconds: decode,
    weightBytesOnGpu: pipeline.weightBytes,
    checkpointBytes: await checkpointBytes(`${values.model}/transformer`) +
      await checkpointBytes(`${values.model}/vae`),
    poolBytesHeld: ctx.pool.stats().bytesHeld,
    torch,
    stepVsTorch: torch ? step / torch.transformer_step_seconds : null,
    decodeVsTorch: torch ? decode / torch.vae_decode_seconds : null,
  };
  console.log(values.json ? JSON.stringify(report) : JSON.stringify(report, null, 2));
  pipeline.release();
  ctx.destroy();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
