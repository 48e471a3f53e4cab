// The denoising loop every pipeline runs: initial latents (seeded noise or given) -> one step per scheduler
// step, each a model forward (conditional and unconditional halves batched together for classifier-free
// guidance) through the request's cache strategy, then the scheduler's fused update -> latents on the GPU,
// which the pipeline decodes. One encoder per step; nothing is read back inside the loop except what the
// strategy's decisions read. A strategy that decides on the GPU gives its reports from its decision log:
// once, after the run, or, when onStep asks, behind every step, read while the next step runs.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, copyCommand } from "../gpu/kernel.ts";
import { Owned } from "../gpu/owned.ts";
import { readbackCount } from "../gpu/readback.ts";
import type { Tensor } from "../gpu/tensor.ts";
import {
  type CacheStats,
  type CacheStrategy,
  type ForwardInfo,
  type ForwardReport,
  NoCache,
} from "../cache/strategy.ts";
import type { DenoiserGraph } from "../model/denoiser_graph.ts";
import { axpy } from "../ops/axpy.ts";
import { samplerStep } from "../ops/sampler_step.ts";
import { type CfgPasses, type ForwardPass, stepPasses } from "./cfg_passes.ts";
import { batchNoise } from "./noise.ts";
import { type Schedule, scheduleState } from "./schedulers/schedule.ts";
import { StepRecorder } from "../gpu/step_recorder.ts";

export interface StepEvent extends ForwardReport {
  step: number;
  steps: number;
  /** The model's timestep input at this step. */
  t: number;
}

export interface DenoiseSpec {
  denoiser: { graph(batch: number): DenoiserGraph };
  schedule: Schedule;
  /** Latents per image in the model's layout: [C, H, W], or FLUX's packed [tokens, 4C]. */
  latentShape: readonly number[];
  images: number;
  /** Class id per image, and the label of the unconditional half when guided (class-conditional models). */
  labels?: { ids: number[]; nullClass: number };
  /** The graph's inputs, written once: each [batch of the graph, ...] (unconditional half after, if guided). */
  inputs?: Record<string, Float32Array>;
  /** Guidance scale, or null for a conditional pass only. */
  guidance: number | null;
  /** How a guided step runs its two halves (default batched); separate passes are for text inputs only. */
  cfgPasses?: CfgPasses;
  /** Separate passes: the unconditional one first in each step (cache-dit's cfg_compute_first). */
  uncondFirst?: boolean;
  seed: number;
  /** [images, C, H, W] starting latents instead of the seeded noise (before init_noise_sigma, as diffusers). */
  latents?: Float32Array;
}

export interface DenoiseOptions {
  strategy?: CacheStrategy;
  /**
   * Called with every step's report, in order, one step behind the loop: once the GPU has finished the step
   * and the next one is submitted (the last step's after the loop), so the GPU never waits for it. Whether
   * it is given changes nothing the strategy decides.
   */
  onStep?: (event: StepEvent) => void;
  /** Checked between steps; an aborted request stops before the next step is encoded. */
  signal?: AbortSignal;
  /**
   * Partial images: after each listed step (before the last), the current latents are decoded and handed
   * over; each costs a decode and a readback.
   */
  previews?: { after: readonly number[]; onPreview: (step: number, decoded: Decoded) => void };
  /**
   * Split the run's seconds into phases: the GPU is waited on once after the last step, so that the loop's
   * queued work is not counted as the decode's (one wait per run, which the run's seconds include).
   */
  timePhases?: boolean;
}

export interface Denoised {
  /** Final latents [images, C, H, W]; the caller releases it. */
  latents: Tensor;
  recorder: StepRecorder;
  steps: StepEvent[];
  cache: CacheStats;
}

/** Labels of class-conditional models, the null class for the unconditional half. */
function writeLabels(ctx: GpuContext, graph: DenoiserGraph, spec: DenoiseSpec, guided: boolean): void {
  if (spec.labels && graph.labels) {
    const { ids, nullClass } = spec.labels;
    ctx.pool.write(graph.labels, Uint32Array.from(guided ? [...ids, ...ids.map(() => nullClass)] : ids));
  }
}

/** Independent noise per (seed, step): a step's fresh noise must not repeat the starting noise. */
function stepSeed(seed: number, step: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + step + 1) >>> 0;
}

/** Writes inputScale * x into the model input, twice under guidance (conditional half, then unconditional). */
function feedCommands(
  owned: Owned,
  ctx: GpuContext,
  x: Tensor,
  graph: DenoiserGraph,
  scale: number,
): Command[] {
  let source = x;
  const commands: Command[] = [];
  if (scale !== 1) {
    const scaled = owned.add(axpy(ctx, x, x, { alpha: scale, beta: 0 }));
    commands.push(...scaled.dispatches);
    source = scaled.out;
  }
  for (let half = 0; half < graph.batch / x.shape[0]; half++) {
    commands.push(copyCommand("model input", source, graph.x, { dstOffset: half * x.byteLength }));
  }
  return commands;
}

/** The step's forwards, each through the strategy; the report is the first pass', with the other's as cfg. */
async function forwardPasses(
  passes: readonly ForwardPass[],
  graph: DenoiserGraph,
  strategy: CacheStrategy,
  recorder: StepRecorder,
  info: ForwardInfo,
): Promise<ForwardReport | null> {
  const reports = new Map<string | undefined, ForwardReport | null>();
  for (const pass of passes) {
    recorder.encode(pass.before);
    recorder.encode(graph.prologue);
    reports.set(pass.branch, await strategy.forward({ ...info, branch: pass.branch }, graph, recorder));
    recorder.encode(graph.epilogue);
    recorder.encode(pass.after);
  }
  if (passes.length === 1) return reports.get(passes[0].branch)!;
  const [cond, uncond] = [reports.get("cond"), reports.get("uncond")];
  return cond && uncond ? { ...cond, cfg: uncond } : null;
}

/** Each step's report, from forward() or, where the GPU decided, from the strategy's settle(), in order. */
class StepReports {
  readonly #forwarded: (ForwardReport | null)[] = [];
  readonly #events: StepEvent[] = [];

  constructor(private readonly strategy: string, private readonly timesteps: readonly number[]) {}

  forwarded(report: ForwardReport | null): void {
    this.#forwarded.push(report);
  }

  /** Takes what a settle() gave, in step order; returns the event of `step` (default: the last forwarded). */
  settled(reports: readonly ForwardReport[], step = this.#forwarded.length - 1): StepEvent {
    const queue = [...reports];
    for (let i = this.#events.length; i < this.#forwarded.length; i++) {
      const report = this.#forwarded[i] ?? queue.shift();
      if (!report) break;
      this.#events.push({ step: i, steps: this.timesteps.length, t: this.timesteps[i], ...report });
    }
    if (queue.length > 0) throw new Error(`${this.strategy}: settle() gave reports for steps not forwarded`);
    const event = this.#events[step];
    if (!event) throw new Error(`${this.strategy}: no report for step ${this.#events.length}`);
    return event;
  }

  events(): StepEvent[] {
    if (this.#events.length < this.timesteps.length) {
      throw new Error(`${this.strategy}: no report for step ${this.#events.length}`);
    }
    return this.#events;
  }
}

/** Runs every step; the latents stay on the GPU for the pipeline to decode (previews decode them early). */
export async function denoise(
  ctx: GpuContext,
  spec: DenoiseSpec,
  options: DenoiseOptions = {},
  decode?: Decode,
): Promise<Denoised> {
  const images = spec.images;
  const guided = spec.guidance !== null;
  const perImage = spec.latentShape.reduce((a, b) => a * b, 1);
  const shape = [images, ...spec.latentShape];
  const { steps, initNoiseSigma } = spec.schedule;
  const initial = spec.latents ?? batchNoise(spec.seed, images, perImage);
  const x = ctx.pool.upload(initNoiseSigma === 1 ? initial : initial.map((v) => v * initNoiseSigma), shape);
  const owned = new Owned();
  try {
    const { graph, passes, output } = stepPasses(ctx, owned, {
      denoiser: spec.denoiser,
      images,
      guided,
      cfgPasses: spec.cfgPasses ?? "batched",
      uncondFirst: spec.uncondFirst ?? false,
      inputs: spec.inputs ?? {},
    });
    writeLabels(ctx, graph, spec, guided);
    const noise = owned.add(ctx.pool.tensor(shape));
    // Multistep state: a ring of earlier steps' x0s and, for a corrector, the previous step's sample.
    const state = scheduleState(spec.schedule);
    const ring = state.historySlots > 0
      ? owned.add(ctx.pool.tensor([state.historySlots, ...shape]))
      : undefined;
    const last = state.lastSample ? owned.add(ctx.pool.tensor(shape)) : undefined;
    const updates = steps.map((s, i) =>
      owned.add(samplerStep(ctx, x, output, {
        x0: s.x0,
        corrector: s.corrector,
        next: s.next,
        guidance: guided ? spec.guidance! : undefined,
        noise,
        history: ring && { ring, step: i },
        last,
      }))
    );
    const feeds = steps.map((s) => feedCommands(owned, ctx, x, graph, s.inputScale));
    const strategy = options.strategy ?? new NoCache();
    const recorder = new StepRecorder(ctx.gpu);
    const reports = new StepReports(strategy.name, steps.map((s) => s.timestep));
    let behind: Promise<void> = Promise.resolve();
    try {
      for (const [i, s] of steps.entries()) {
        options.signal?.throwIfAborted();
        ctx.pool.write(graph.t, new Float32Array(graph.batch).fill(s.timestep));
        if (s.next.noise !== 0) ctx.pool.write(noise, batchNoise(stepSeed(spec.seed, i), images, perImage));
        recorder.encode(feeds[i]);
        const info = { step: i, steps: steps.length, images };
        reports.forwarded(await forwardPasses(passes, graph, strategy, recorder, info));
        recorder.encode(updates[i].dispatches);
        recorder.submit();
        if (options.onStep) {
          // Step i's log is copied behind it now; step i - 1's report goes out while step i runs.
          const done = Promise.all([ctx.gpu.device.queue.onSubmittedWorkDone(), strategy.settle(recorder)]);
          await behind;
          behind = done.then(([, settled]) => options.onStep!(reports.settled(settled, i)));
        }
        if (decode && i < steps.length - 1 && options.previews?.after.includes(i)) {
          options.previews.onPreview(i, await decode(x, recorder));
        }
      }
      await behind;
      reports.settled(await strategy.settle(recorder));
      return { latents: x, recorder, steps: reports.events(), cache: strategy.stats() };
    } finally {
      // A run stopped by an error still lets the step in flight settle before its buffers are released.
      await behind.catch(() => {});
      recorder.submit();
    }
  } catch (e) {
    x.release();
    throw e;
  } finally {
    owned.release();
  }
}

export interface GenerateResult {
  /** [images, channels, height, width] in the model's data range (about [-1, 1]). */
  images: Float32Array;
  shape: [number, number, number, number];
  steps: StepEvent[];
  seconds: number;
  /** Readbacks this run made (the final image and any cache decisions). */
  readbacks: number;
  submits: number;
  /** The cache strategy's account of the run. */
  cache: CacheStats;
  /** What the pipeline changed in the request that the user should know (a truncated prompt). */
  notes: string[];
  /** Where the seconds went, when DenoiseOptions.timePhases asked. */
  phases?: PhaseSeconds;
}

/** Seconds of each phase of a run, each ending when the GPU has finished it. */
export interface PhaseSeconds {
  /** The prompts through the text encoders (text models; a remembered prompt costs none). */
  encode?: number;
  denoise: number;
  decode: number;
}

/** Images [n, C, H, W] in the model's data range. */
export interface Decoded {
  images: Float32Array;
  shape: [number, number, number, number];
}

/** Latents -> images: a pipeline's decode stage. It reads the latents and leaves them as they are. */
export type Decode = (latents: Tensor, recorder: StepRecorder) => Promise<Decoded>;

/** Denoises, decodes, and accounts for the whole run: its seconds and its readbacks. */
export async function generateImages(
  ctx: GpuContext,
  spec: DenoiseSpec,
  options: DenoiseOptions,
  decode: Decode,
): Promise<GenerateResult> {
  const started = performance.now();
  const readbacksBefore = readbackCount();
  const { latents, recorder, steps, cache } = await denoise(ctx, spec, options, decode);
  try {
    if (options.timePhases) await ctx.gpu.device.queue.onSubmittedWorkDone();
    const denoised = performance.now();
    const { images, shape } = await decode(latents, recorder);
    const ended = performance.now();
    return {
      images,
      shape,
      steps,
      cache,
      submits: recorder.submits,
      seconds: (ended - started) / 1000,
      readbacks: readbackCount() - readbacksBefore,
      notes: [],
      ...(options.timePhases
        ? { phases: { denoise: (denoised - started) / 1000, decode: (ended - denoised) / 1000 } }
        : {}),
    };
  } finally {
    latents.release();
  }
}
