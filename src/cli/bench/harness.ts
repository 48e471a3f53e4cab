// Shared timing for kernel benchmarks: a benchmark is measured as whole submits waited on, so the figure
// includes what a user would see (dispatch overhead too), never a timed test.
import type { GpuContext } from "../../gpu/context.ts";
import { type Dispatch, encodeDispatches } from "../../gpu/kernel.ts";

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

/** Median milliseconds of one pass over `dispatches`, encoded back to back in submits that are waited on. */
export async function timeDispatches(
  ctx: GpuContext,
  dispatches: readonly Dispatch[],
  options: TimingOptions = {},
): Promise<number> {
  const { warmup = 1, budgetMs = 1500, minRuns = 3 } = options;
  await ctx.kernels.ready();
  const runOnce = async (repeat: number) => {
    const encoder = ctx.gpu.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (let r = 0; r < repeat; r++) encodeDispatches(pass, dispatches);
    pass.end();
    const start = performance.now();
    ctx.gpu.device.queue.submit([encoder.finish()]);
    await ctx.gpu.device.queue.onSubmittedWorkDone();
    return (performance.now() - start) / repeat;
  };
  let single = Infinity;
  for (let i = 0; i < warmup; i++) single = Math.min(single, await runOnce(1));
  const repeat = Math.max(1, Math.min(256, Math.ceil(TARGET_SUBMIT_MS / single)));
  const times: number[] = [];
  const began = performance.now();
  while (times.length < minRuns || performance.now() - began < budgetMs) times.push(await runOnce(repeat));
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export function gflops(flops: number, ms: number): number {
  return flops / (ms * 1e6);
}
