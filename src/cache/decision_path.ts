// Which way a strategy's per-step decisions reach the host, chosen per adapter and never by the transport:
//   gpu: a decision kernel turns the measured diff into indirect dispatch arguments, so the GPU runs one of
//     the two paths it was given (the other's dispatches cost what an empty indirect dispatch costs), and
//     the decision log is read behind the loop;
//   readback: the diff is read back mid-step and the host encodes only the path that runs (each read stalls
//     the step for a round trip).
// Both take the same decisions (the kernels' CPU references are the host path's rules). The GPU path is the
// default; an adapter where a step's conditional dispatches (empty in a cached step, run indirectly in a
// computed one) cost more than the readbacks the host path would make takes the readback path. The unit costs
// are measured once per GPU context (measureDecisionCosts).
import type { GpuContext } from "../gpu/context.ts";
import { type Command, encodeCommands } from "../gpu/kernel.ts";
import { readFloats } from "../gpu/readback.ts";
import { axpy, copyByDispatch } from "../ops/axpy.ts";
import { gpuCacheDecision } from "./kernels/cache_decision.ts";
import { ON_COMPUTE } from "./kernels/decision_abi.ts";

export const DECISION_PATHS = ["gpu", "readback"] as const;

export type DecisionPath = (typeof DECISION_PATHS)[number];

/** The unit costs of this adapter, in milliseconds. */
export interface DecisionCosts {
  /** One zero-size indirect dispatch, with its pipeline and bind-group change. */
  emptyDispatchMs: number;
  /** What running a dispatch indirectly, sized by the decision, adds to running it directly. */
  indirectExtraMs: number;
  /** One small readback after a submit: the round trip a host-decided step waits for. */
  readbackMs: number;
}

/** What one step of a strategy would cost on either path, in those units. */
export interface PathDemand {
  /** Conditional dispatches the GPU path encodes that do not run, in the worse of a cached and a computed step. */
  emptyDispatches: number;
  /** Conditional dispatches that run in a computed step (the compute path's), where the host would run them directly. */
  indirectDispatches?: number;
  /** Readbacks the readback path makes in such a step. */
  readbacks: number;
}

/**
 * The GPU path unless the costs are known and its worse step (a cached one's empty dispatches, a computed
 * one's indirect ones) costs more than the readbacks.
 */
export function chooseDecisionPath(costs: DecisionCosts | null, demand: PathDemand): DecisionPath {
  if (!costs || demand.readbacks === 0) return "gpu";
  const gpu = Math.max(
    demand.emptyDispatches * costs.emptyDispatchMs,
    (demand.indirectDispatches ?? 0) * costs.indirectExtraMs,
  );
  return gpu > demand.readbacks * costs.readbackMs ? "readback" : "gpu";
}

/**
 * The most conditional dispatches per readback that still decide on the GPU, where each is empty in a cached
 * step and runs in a computed one (chooseDecisionPath's crossover).
 */
export function gpuDecidedDispatches(costs: DecisionCosts): number {
  return Math.floor(costs.readbackMs / Math.max(costs.emptyDispatchMs, costs.indirectExtraMs, MIN_MS));
}

const measured = new WeakMap<GpuContext, DecisionCosts>();

/** The costs measured for `ctx`, or null before measureDecisionCosts ran (strategies then take the GPU path). */
export function knownDecisionCosts(ctx: GpuContext): DecisionCosts | null {
  return measured.get(ctx) ?? null;
}

/** Below the timer's resolution: what a measure that came out at 0 (or less, from noise) is taken to be. */
const MIN_MS = 1e-6;
/** Empty dispatches per timed submit, and timed repeats of each measure (the median is kept). */
const EMPTY_DISPATCHES = 512;
const REPEATS = 3;

/**
 * Measures the unit costs on `ctx`'s adapter (a few submits and readbacks, ~0.3 s on llvmpipe) and keeps
 * them for the context's strategies; later calls return what the first one measured. The conditional
 * dispatches are measured as a step makes them: the decision kernel sizes them (all empty, the step forced
 * cached; all full, forced computed) and they follow it in the same pass, encoded anew each time; the full
 * ones against the same dispatches run directly.
 */
export async function measureDecisionCosts(ctx: GpuContext): Promise<DecisionCosts> {
  const known = measured.get(ctx);
  if (known) return known;
  const a = ctx.pool.upload(new Float32Array([1, 2, 3, 4]), [4]);
  const b = ctx.pool.tensor([4]);
  const diff = ctx.pool.tensor([1]);
  // Two pipelines (a copy, an in-place axpy) alternate, as the dispatches of a real span change pipelines.
  const ops = [copyByDispatch(ctx, a, b), axpy(ctx, a, b, { alpha: 1, inPlace: true })];
  const slots = Array.from({ length: EMPTY_DISPATCHES }, (_, i) => ({
    dispatch: ops[i % 2].dispatches[0],
    code: ON_COMPUTE,
  }));
  const decision = gpuCacheDecision(ctx, diff, slots, 1, {
    residual_diff_threshold: 1,
    max_cached_steps: -1,
    max_continuous_cached_steps: -1,
    max_accumulated_residual_diff: null,
  });
  const conditional = [...decision.commands, ...decision.slots];
  const direct = slots.map((s) => s.dispatch);
  try {
    await ctx.kernels.ready();
    const submit = async (commands: readonly Command[], times: number) => {
      const start = performance.now();
      const encoder = ctx.gpu.device.createCommandEncoder();
      for (let i = 0; i < times; i++) encodeCommands(encoder, commands);
      ctx.gpu.device.queue.submit([encoder.finish()]);
      await ctx.gpu.device.queue.onSubmittedWorkDone();
      return performance.now() - start;
    };
    // Per dispatch, what one more pass over `commands` adds: the fixed cost of a submit and its wait cancels.
    const marginal = async (commands: readonly Command[]) =>
      ((await submit(commands, 2)) - (await submit(commands, 1))) / EMPTY_DISPATCHES;
    const forced = (cached: boolean) => decision.setStep(0, { cached, gate: cached ? "similar" : "warmup" });
    forced(true);
    await submit(conditional, 1);
    const emptyMs: number[] = [];
    const extraMs: number[] = [];
    const readbackMs: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      forced(true);
      emptyMs.push(Math.max(MIN_MS, await marginal(conditional)));
      forced(false);
      extraMs.push(Math.max(MIN_MS, (await marginal(conditional)) - (await marginal(direct))));
      const started = performance.now();
      await readFloats(ctx.gpu, b);
      readbackMs.push(performance.now() - started);
    }
    const costs = {
      emptyDispatchMs: median(emptyMs),
      indirectExtraMs: median(extraMs),
      readbackMs: median(readbackMs),
    };
    measured.set(ctx, costs);
    return costs;
  } finally {
    decision.release();
    for (const op of ops) op.release();
    for (const t of [a, b, diff]) t.release();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[sorted.length >> 1];
}
