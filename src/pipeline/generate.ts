// The denoising loop: seeded noise -> `steps` sampler updates, each one model forward (conditional and
// unconditional halves batched together for classifier-free guidance) -> images. One encoder per step; the
// block list runs through the request's cache strategy; the only readback is the final image, plus whatever
// the strategy's decisions read (a strategy that decides on the GPU reads its log once, at the end, unless
// onStep waits on every step's report).
import type { GpuContext } from "../gpu/context.ts";
import { copyCommand, disposeDispatches } from "../gpu/kernel.ts";
import { readbackCount } from "../gpu/readback.ts";
import { type CacheStats, type CacheStrategy, type ForwardReport, NoCache } from "../cache/strategy.ts";
import type { Dit, DitGraph } from "../model/mnist_dit/transformer.ts";
import { samplerStep } from "../ops/sampler_step.ts";
import { batchNoise } from "./noise.ts";
import { type SamplerName, samplerSteps } from "./sampler.ts";
import { StepRecorder } from "./step_recorder.ts";

export interface GenerateRequest {
  /** One image per label (class indices of the model). */
  labels: number[];
  steps: number;
  seed: number;
  /** Classifier-free guidance scale; 1 runs the conditional pass only. */
  guidance: number;
  sampler?: SamplerName;
  /** Timestep shift (FLUX/SD3); 1 = uniform grid. */
  shift?: number;
  /** DDIM stochasticity. */
  eta?: number;
}

export interface StepEvent extends ForwardReport {
  step: number;
  steps: number;
  t: number;
}

export interface GenerateOptions {
  strategy?: CacheStrategy;
  /** Called once the GPU has finished each step (waiting costs ~11 ms per step, so only when asked). */
  onStep?: (event: StepEvent) => void;
  /** Checked between steps; an aborted request stops before the next step is encoded. */
  signal?: AbortSignal;
  /** Starting noise [images, C, S, S] instead of the seeded one (reference comparisons, img2img later). */
  initialNoise?: Float32Array;
}

export interface GenerateResult {
  /** [images, channels, size, size] in the model's data range (about [-1, 1]). */
  images: Float32Array;
  shape: [number, number, number, number];
  steps: StepEvent[];
  seconds: number;
  /** Readbacks this run made (the final image and any cache decisions). */
  readbacks: number;
  submits: number;
  /** The cache strategy's account of the run. */
  cache: CacheStats;
}

/** Independent noise per (seed, step): DDIM's fresh noise must not repeat the starting noise. */
function stepSeed(seed: number, step: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + step + 1) >>> 0;
}

export async function generate(
  ctx: GpuContext,
  model: Dit,
  request: GenerateRequest,
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  const started = performance.now();
  const readbacksBefore = readbackCount();
  const c = model.config;
  const images = request.labels.length;
  const guided = request.guidance !== 1;
  const graph: DitGraph = model.graph(guided ? 2 * images : images);
  const perImage = c.in_channels * c.sample_size * c.sample_size;
  const shape: [number, number, number, number] = [images, c.in_channels, c.sample_size, c.sample_size];
  const labels = guided ? [...request.labels, ...request.labels.map(() => c.null_class)] : request.labels;
  ctx.pool.write(graph.labels, Uint32Array.from(labels));

  const x = ctx.pool.upload(options.initialNoise ?? batchNoise(request.seed, images, perImage), shape);
  const noise = ctx.pool.tensor(shape);
  const schedule = samplerSteps({
    sampler: request.sampler ?? "euler",
    steps: request.steps,
    shift: request.shift,
    eta: request.eta,
  });
  const updates = schedule.map((s) =>
    samplerStep(ctx, x, graph.output, {
      x0: { sample: 0, model: 0, clip: null },
      next: { sample: s.a, x0: 0, previous: 0, model: s.b, noise: s.c },
      guidance: guided ? request.guidance : undefined,
      noise,
    })
  );
  // The model input is the current x, twice under guidance (conditional half, then unconditional half).
  const feed = [copyCommand("feed x", x, graph.x)];
  if (guided) feed.push(copyCommand("feed x (unconditional)", x, graph.x, { dstOffset: x.byteLength }));
  const strategy = options.strategy ?? new NoCache();
  const recorder = new StepRecorder(ctx.gpu);
  const reports: (ForwardReport | null)[] = [];
  try {
    for (const [i, s] of schedule.entries()) {
      options.signal?.throwIfAborted();
      ctx.pool.write(graph.t, new Float32Array(graph.batch).fill(s.t));
      if (s.c !== 0) {
        ctx.pool.write(noise, batchNoise(stepSeed(request.seed, i), images, perImage));
      }
      recorder.encode(feed);
      recorder.encode(graph.prologue);
      const info = { step: i, steps: schedule.length, deferReport: !options.onStep };
      const report = await strategy.forward(info, graph, recorder);
      recorder.encode(graph.epilogue);
      recorder.encode(updates[i].dispatches);
      recorder.submit();
      reports.push(report);
      if (options.onStep) {
        if (!report) throw new Error(`${strategy.name}: deferred a report that onStep waits for`);
        await ctx.gpu.device.queue.onSubmittedWorkDone();
        options.onStep({ step: i, steps: schedule.length, t: s.t, ...report });
      }
    }
    const result = await recorder.read(x);
    const settled = await strategy.settle(recorder);
    const events = schedule.map((s, i): StepEvent => {
      const report = reports[i] ?? settled.shift();
      if (!report) throw new Error(`${strategy.name}: no report for step ${i}`);
      return { step: i, steps: schedule.length, t: s.t, ...report };
    });
    return {
      images: result,
      shape,
      steps: events,
      seconds: (performance.now() - started) / 1000,
      readbacks: readbackCount() - readbacksBefore,
      submits: recorder.submits,
      cache: strategy.stats(),
    };
  } finally {
    recorder.submit();
    for (const u of updates) u.release();
    disposeDispatches(feed);
    x.release();
    noise.release();
  }
}
