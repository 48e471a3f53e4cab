// Shared timing for kernel benchmarks: a benchmark is measured as whole submits waited on, so the figure
// includes what a user would see (dispatch overhead too), never a timed test.
import type { GpuContext } from "../../gpu/context.ts";
import { deterministicInput } from "../../gpu/deterministic_input.ts";
import { type Command, encodeCommands } from "../../gpu/kernel.ts";
import { linear } from "../../ops/linear.ts";

/** Seeded inputs in [-1, 1) and the error measure of every suite: the ones the start-up self-check uses. */
export { deterministicInput as benchInput, maxAbsDiff } from "../../gpu/deterministic_input.ts";

export interface BenchRow {
  kernel: string;
  shape: string;
  ms: number;
  /** Useful work rate; null where FLOPs are not the point (memory-bound kernels report GB/s in `note`). */
  gflops: number | null;
  /** Against the kernel's CPU reference or the variant it is compared with; null where not checked. */
  maxAbsErr: number | null;
  note?: string;
}

export interface BenchSuite {
  name: string;
  run(ctx: GpuContext, report: (row: BenchRow) => void): Promise<void>;
}

export interface TimingOptions {
  /** Untimed submits first: the first run of a pipeline pays its JIT on llvmpipe. */
  warmup?: number;
  /** Keep measuring until this many ms have passed (at least `minRuns` runs). */
  budgetMs?: number;
  minRuns?: number;
}

/** Enough repeats per submit that the ~11 ms submit-and-wait floor of Deno is amortised away. */
const TARGET_SUBMIT_MS = 200;

/** Milliseconds of submits of `repeat` passes over `commands`, each waited on. */
function submitTimer(ctx: GpuContext, commands: readonly Command[]) {
  return async (repeat: number) => {
    const encoder = ctx.gpu.device.createCommandEncoder();
    encodeCommands(encoder, Array.from({ length: repeat }, () => commands).flat());
    const start = performance.now();
    ctx.gpu.device.queue.submit([encoder.finish()]);
    await ctx.gpu.device.queue.onSubmittedWorkDone();
    return performance.now() - start;
  };
}

/** Median milliseconds of one pass over `commands`, encoded back to back in submits that are waited on. */
export async function timeCommands(
  ctx: GpuContext,
  commands: readonly Command[],
  options: TimingOptions = {},
): Promise<number> {
  const { warmup = 1, budgetMs = 1500, minRuns = 3 } = options;
  await ctx.kernels.ready();
  const submit = submitTimer(ctx, commands);
  let single = Infinity;
  for (let i = 0; i < warmup; i++) single = Math.min(single, await submit(1));
  const repeat = Math.max(1, Math.min(256, Math.ceil(TARGET_SUBMIT_MS / single)));
  const times: number[] = [];
  const began = performance.now();
  while (times.length < minRuns || performance.now() - began < budgetMs) {
    times.push(await submit(repeat) / repeat);
  }
  return median(times);
}

/** Seconds of one pass over a model's `commands`: the median of `repeat` waited-on submits after a warm-up. */
export async function modelSeconds(
  ctx: GpuContext,
  commands: readonly Command[],
  repeat: number,
): Promise<number> {
  return await timeCommands(ctx, commands, { warmup: 1, minRuns: repeat, budgetMs: 0 }) / 1000;
}

/**
 * Milliseconds that one more pass over `commands` adds to a submit: the median of (t(2R) - t(R)) / R, in
 * which the fixed submit-and-wait cost cancels. For short command lists, where that cost would dominate.
 */
export async function marginalMs(
  ctx: GpuContext,
  commands: readonly Command[],
  options: TimingOptions = {},
): Promise<number> {
  const { warmup = 1, budgetMs = 3000, minRuns = 5 } = options;
  await ctx.kernels.ready();
  const submit = submitTimer(ctx, commands);
  let single = Infinity;
  for (let i = 0; i < warmup; i++) single = Math.min(single, await submit(1));
  const repeat = Math.max(1, Math.min(512, Math.ceil(TARGET_SUBMIT_MS / single)));
  const times: number[] = [];
  const began = performance.now();
  while (times.length < minRuns || performance.now() - began < budgetMs) {
    times.push((await submit(2 * repeat) - await submit(repeat)) / repeat);
  }
  return median(times);
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The promoted matmul kernel at 1024^3 on this adapter, measured now (same conditions as a model beside it). */
export async function matmulKernelGflops(ctx: GpuContext): Promise<number> {
  const n = 1024;
  const x = ctx.pool.upload(deterministicInput(n * n, 1), [n, n]);
  const w = ctx.pool.upload(deterministicInput(n * n, 2), [n, n]);
  const op = linear(ctx, x, w);
  const ms = await timeCommands(ctx, op.dispatches);
  op.release();
  x.release();
  w.release();
  return gflops(2 * n * n * n, ms);
}

export function gflops(flops: number, ms: number): number {
  return flops / (ms * 1e6);
}
