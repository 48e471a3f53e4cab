// The GPU-side cache decision (shaders/cache_decision.wgsl): one tiny dispatch per step turns the residual
// diff into the step's decision and into indirect dispatch arguments, so the skipped span and its
// replacement are both encoded and the GPU runs one of them. TaylorSeer's dispatches can ride along: their
// conditions depend on the calibrator's history, their weights are computed by the kernel and copied into
// their uniforms. An unlisted B block (Bn_compute_blocks_ids) gets its own tiny dispatch after its input diff
// (gpuBlockDecision), which reads the step's decision from the state. The host reads the per-step log
// behind the loop. CPU references: CacheDecision and similar() (src/cache/decision.ts),
// TaylorSeerReference (src/ref/taylor_seer.ts).
import type { GpuContext } from "../../gpu/context.ts";
import { bindKernel, type Command, type Dispatch, disposeDispatches, KernelError } from "../../gpu/kernel.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { type Decision, type Gate, GATES } from "../decision.ts";
import { conditionalDispatches, type ConditionalSlot, weightCopies } from "./conditional_dispatch.ts";
import { decisionKernelSource } from "./decision_abi.ts";
import { uniformLayout } from "../../gpu/uniform_layout.ts";

const KERNEL = "cache_decision";
const BINDINGS = ["read", "read", "read_write", "read_write", "read_write", "uniform"] as const;
const PARAMS = uniformLayout("Params", [
  { name: "step", type: "u32" },
  {
    name: "mode",
    type: "u32",
    note: "0: decide here; 1: the host forced compute; 2: the host forced cached",
  },
  { name: "host_gate", type: "u32", note: "gate code of a forced step" },
  { name: "slots", type: "u32", note: "conditional dispatches" },
  { name: "threshold", type: "f32" },
  { name: "max_cached", type: "i32", note: "< 0: no limit" },
  { name: "max_continuous", type: "i32", note: "< 0: no limit" },
  { name: "max_accumulated", type: "f32", note: "< 0: gate off" },
  {
    name: "derivatives",
    type: "u32",
    note: "calibratorHistory: TaylorSeer's order n, 1 for FoCa, 0 without",
  },
]);

/** Per-request counters ahead of the per-step log in the state tensor, and each step's entries. */
const COUNTERS = 8;
const LOGGED = 4;

export interface GpuDecisionOptions {
  residual_diff_threshold: number;
  max_cached_steps: number;
  max_continuous_cached_steps: number;
  max_accumulated_residual_diff: number | null;
  /** calibratorHistory of the calibrator whose dispatches are among the slots (0 without). */
  derivatives?: number;
}

export interface LoggedStep extends Decision {
  /** The diff the threshold was compared with; null where an earlier gate decided. */
  diff: number | null;
  /** Unlisted B blocks that replayed their residual (cached steps only). */
  replayed: number;
}

export interface GpuCacheDecision {
  /** The decision dispatch and the weight copies; encode after the diff, before the slots. */
  commands: Command[];
  /** The slots as indirect dispatches, in order: each runs only when its condition holds for the step. */
  slots: Dispatch[];
  /** [8 + 4 * steps] counters and per-step log. */
  state: Tensor;
  /** Sets the next step (a queue write, like a uniform): forced by the host, or left to the GPU. */
  setStep(step: number, forced: Decision | null): void;
  /** Decodes the state read back after the run, one entry per step. */
  decode(state: Float32Array): LoggedStep[];
  release(): void;
}

export function gpuCacheDecision(
  ctx: GpuContext,
  diff: Tensor,
  slots: readonly ConditionalSlot[],
  steps: number,
  options: GpuDecisionOptions,
): GpuCacheDecision {
  if (!Number.isInteger(steps) || steps < 1) throw new KernelError(KERNEL, `steps ${steps} must be >= 1`);
  const conditional = conditionalDispatches(ctx, KERNEL, slots);
  const initial = new Float32Array(COUNTERS + LOGGED * steps);
  initial[3] = -1; // no computed step yet
  const state = ctx.pool.upload(initial, [initial.length]);
  const weights = ctx.pool.tensor([2 * Math.max(slots.length, 1)]);
  const kernel = decisionKernel(ctx, "main");
  const uniform = (step: number, mode: number, gate: number) =>
    PARAMS.pack({
      step,
      mode,
      host_gate: gate,
      slots: slots.length,
      threshold: options.residual_diff_threshold,
      max_cached: options.max_cached_steps,
      max_continuous: options.max_continuous_cached_steps,
      max_accumulated: options.max_accumulated_residual_diff ?? -1,
      derivatives: options.derivatives ?? 0,
    });
  const decision = bindKernel(
    ctx.gpu,
    kernel,
    [diff, conditional.plan, state, conditional.args, weights],
    [1, 1, 1],
    uniform(0, 1, 0),
  );
  return {
    commands: [decision, ...weightCopies(KERNEL, weights, slots)],
    slots: conditional.dispatches,
    state,
    setStep(step, forced) {
      if (step < 0 || step >= steps) throw new KernelError(KERNEL, `step ${step} is outside 0..${steps - 1}`);
      const [mode, gate] = forced ? [forced.cached ? 2 : 1, GATES.indexOf(forced.gate)] : [0, 0];
      ctx.gpu.device.queue.writeBuffer(decision.uniform!, 0, uniform(step, mode, gate));
    },
    decode(values) {
      return Array.from({ length: steps }, (_, s) => {
        const [cached, measured, gate, replayed] = values.subarray(
          COUNTERS + LOGGED * s,
          COUNTERS + LOGGED * (s + 1),
        );
        return {
          cached: cached === 1,
          diff: measured < 0 ? null : measured,
          gate: GATES[gate] as Gate,
          replayed,
        };
      });
    },
    release() {
      disposeDispatches([decision]);
      conditional.release();
      weights.release();
      state.release();
    },
  };
}

function decisionKernel(ctx: GpuContext, entry: "main" | "decide_block") {
  return ctx.kernels.get({
    name: KERNEL,
    source: decisionKernelSource(KERNEL, PARAMS),
    bindings: BINDINGS,
    entry,
  });
}

export interface GpuBlockDecision {
  /** The block's decision dispatch; encode after its input diff, before the slots. */
  command: Dispatch;
  /** The block's slots as indirect dispatches, same order. */
  slots: Dispatch[];
  release(): void;
}

/**
 * An unlisted B block decided on the GPU, after `step`'s decision (same state): its slots with codes
 * ON_COMPUTE (stores of a computed step), ON_CACHED (the replay) and SLOT.blockRuns (the block itself).
 */
export function gpuBlockDecision(
  ctx: GpuContext,
  step: GpuCacheDecision,
  diff: Tensor,
  slots: readonly ConditionalSlot[],
  threshold: number,
): GpuBlockDecision {
  const conditional = conditionalDispatches(ctx, KERNEL, slots);
  const unusedWeights = ctx.pool.tensor([2]);
  const command = bindKernel(
    ctx.gpu,
    decisionKernel(ctx, "decide_block"),
    [diff, conditional.plan, step.state, conditional.args, unusedWeights],
    [1, 1, 1],
    PARAMS.pack({
      step: 0,
      mode: 0,
      host_gate: 0,
      slots: slots.length,
      threshold,
      max_cached: -1,
      max_continuous: -1,
      max_accumulated: -1,
      derivatives: 0,
    }),
  );
  return {
    command,
    slots: conditional.dispatches,
    release() {
      disposeDispatches([command]);
      conditional.release();
      unusedWeights.release();
    },
  };
}
