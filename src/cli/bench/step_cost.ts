// What one denoising step of each kind costs on this adapter, measured as generate.ts runs steps: one submit
// per step (the readback path's read between its two submits), each encode() call its own compute pass,
// many steps in a row and the final wait cancelled out (t(2k) - t(k)), wall-clock and this process' CPU
// time (llvmpipe's threads are this process'). The steps are what a strategy encodes, captured from a
// DbCache on the model's graph: step 0 computes, step 1 computes or caches, and its commands are then
// replayed. The sampler update and the input feed (a dispatch and a copy per step) are left out: they are
// the same in every kind.
import process from "node:process";
import { createStrategy } from "../../cache/create.ts";
import type { DecisionPath } from "../../cache/decision_path.ts";
import { resolveCacheOptions } from "../../cache/options.ts";
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, encodeCommands, isDispatch } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { DenoiserGraph } from "../../model/denoiser_graph.ts";
import { marginalMs } from "./harness.ts";

/** A step as the loop submits it: each segment one submit of encode() calls, a read after each but the last. */
export interface StepCommands {
  segments: Command[][][];
  reads: Tensor[];
}

/** A step of one submit, encoded in `calls`. */
export function oneSubmit(...calls: readonly Command[][]): StepCommands {
  return { segments: [[...calls]], reads: [] };
}

/** Encodes what the strategy records, and keeps it, split where it reads back. */
class CapturingRecorder extends StepRecorder {
  readonly step: StepCommands = { segments: [[]], reads: [] };

  override encode(commands: readonly Command[]): void {
    this.step.segments[this.step.segments.length - 1].push([...commands]);
    super.encode(commands);
  }

  override async read(tensor: Tensor): Promise<Float32Array> {
    this.step.reads.push(tensor);
    const values = await super.read(tensor);
    this.step.segments.push([]);
    return values;
  }
}

/**
 * Step 1 of DBCache F1B0 on `graph`, on `path`: cached at a threshold above any diff; computed after
 * measuring the diff at 1e-9 on the readback path, and at 0 on the GPU path (its diff and decision still
 * run, and every replay computes: at 1e-9 the replays would see their own residual again and cache). The
 * strategy holds the buffers the commands use: `release` it after.
 */
export async function dbcacheStep(
  ctx: GpuContext,
  graph: DenoiserGraph,
  channels: number,
  path: DecisionPath,
  cached: boolean,
): Promise<{ step: StepCommands; release(): void }> {
  const cache = {
    strategy: "dbcache",
    Fn: 1,
    Bn: 0,
    max_warmup_steps: 0,
    residual_diff_threshold: cached ? 1e9 : path === "gpu" ? 0 : 1e-9,
  };
  const context = { blocks: graph.blocks.length, steps: 2, channels };
  const strategy = createStrategy(ctx, resolveCacheOptions(cache, context), path);
  let recorder = new CapturingRecorder(ctx.gpu);
  for (const step of [0, 1]) {
    // Another timestep at step 1, so that F's residual moves and the diff is measured against something.
    ctx.pool.write(graph.t, new Float32Array(graph.batch).fill(step === 0 ? 0.9 : 0.5));
    recorder = new CapturingRecorder(ctx.gpu);
    recorder.encode(graph.prologue);
    await strategy.forward({ step, steps: 2 }, graph, recorder);
    recorder.encode(graph.epilogue);
    recorder.submit();
  }
  await strategy.settle(recorder);
  const stats = strategy.stats();
  if (stats.cachedSteps.includes(1) !== cached || stats.decisions !== path) {
    strategy.release();
    throw new Error(`bench:step: step 1 was not ${cached ? "cached" : "computed"} on the ${path} path`);
  }
  return { step: recorder.step, release: () => strategy.release() };
}

/** One submit per step for `k` steps, then one wait: milliseconds of wall-clock and of process CPU. */
async function loop(ctx: GpuContext, step: StepCommands, k: number): Promise<[number, number]> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < k; i++) {
    for (const [j, segment] of step.segments.entries()) {
      const encoder = ctx.gpu.device.createCommandEncoder();
      for (const call of segment) encodeCommands(encoder, call);
      ctx.gpu.device.queue.submit([encoder.finish()]);
      if (step.reads[j]) await readFloats(ctx.gpu, step.reads[j]);
    }
  }
  await ctx.gpu.device.queue.onSubmittedWorkDone();
  const used = process.cpuUsage(cpu);
  return [performance.now() - started, (used.user + used.system) / 1000];
}

/** Per-step [wall ms, CPU ms] of `step`: the 2k-step loop less the k-step one, over k. */
export async function perStep(ctx: GpuContext, step: StepCommands, k: number): Promise<[number, number]> {
  const [wall1, cpu1] = await loop(ctx, step, k);
  const [wall2, cpu2] = await loop(ctx, step, 2 * k);
  return [(wall2 - wall1) / k, (cpu2 - cpu1) / k];
}

/** Where a cached step's commands go, by what they are: GPU milliseconds of each part in one submit. */
export async function cachedStepParts(
  ctx: GpuContext,
  graph: DenoiserGraph,
  step: StepCommands,
): Promise<Record<string, { commands: number; ms: number }>> {
  const model = new Set<Command>([...graph.prologue, ...graph.epilogue]);
  const first = new Set<Command>(graph.blocks[0]);
  const blockGroups = new Set(graph.blocks.slice(1).flat().filter(isDispatch).map((d) => d.bindGroup));
  const parts: Record<string, Command[]> = {
    "prologue + epilogue": [],
    "F (block 0)": [],
    "skipped span: empty indirect dispatches": [],
    "the decision path's own commands": [],
  };
  for (const c of step.segments.flat(2)) {
    const part = model.has(c)
      ? "prologue + epilogue"
      : first.has(c)
      ? "F (block 0)"
      : isDispatch(c) && blockGroups.has(c.bindGroup)
      ? "skipped span: empty indirect dispatches"
      : "the decision path's own commands";
    parts[part].push(c);
  }
  const out: Record<string, { commands: number; ms: number }> = {};
  for (const [name, commands] of Object.entries(parts)) {
    if (commands.length === 0) continue;
    out[name] = { commands: commands.length, ms: await marginalMs(ctx, commands, { budgetMs: 1500 }) };
  }
  return out;
}
