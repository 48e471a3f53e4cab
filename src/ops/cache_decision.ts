// The GPU-side cache decision (shaders/cache_decision.wgsl): one tiny dispatch per step turns the residual
// diff into the step's decision and into indirect dispatch arguments, so the skipped span and its
// replacement are both encoded and the GPU runs one of them. The host reads the per-step log once, after
// the run. CPU reference: CacheDecision in src/cache/decision.ts.
import type { GpuContext } from "../gpu/context.ts";
import { bindKernel, type Dispatch, disposeDispatches, KernelError, packUniform } from "../gpu/kernel.ts";
import { type Branches, conditionalDispatches } from "./conditional_dispatch.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type Decision, type Gate, GATES } from "../cache/decision.ts";

const KERNEL = "cache_decision";
const BINDINGS = ["read", "read", "read_write", "read_write", "uniform"] as const;
/** Per-request counters ahead of the per-step log in the state tensor. */
const COUNTERS = 4;

export interface GpuDecisionOptions {
  residual_diff_threshold: number;
  max_cached_steps: number;
  max_continuous_cached_steps: number;
  max_accumulated_residual_diff: number | null;
}

export interface LoggedStep extends Decision {
  /** The diff the threshold was compared with; null where an earlier gate decided. */
  diff: number | null;
}

export interface GpuCacheDecision {
  /** The decision's dispatch; encode after the diff, before the branches. */
  dispatches: Dispatch[];
  /** The branches as indirect dispatches: each runs only when the step's decision picks its branch. */
  branches: { compute: Dispatch[]; cached: Dispatch[] };
  /** [4 + 3 * steps] counters and per-step log. */
  state: Tensor;
  /** Sets the next step (a queue write, like a uniform): forced by the host, or left to the GPU. */
  setStep(step: number, forced: Decision | null): void;
  /** Decodes the state read back after the run, one entry per step. */
  decode(state: Float32Array, steps: number): LoggedStep[];
  release(): void;
}

export function gpuCacheDecision(
  ctx: GpuContext,
  diff: Tensor,
  branches: Branches,
  steps: number,
  options: GpuDecisionOptions,
): GpuCacheDecision {
  if (!Number.isInteger(steps) || steps < 1) throw new KernelError(KERNEL, `steps ${steps} must be >= 1`);
  const conditional = conditionalDispatches(ctx, KERNEL, branches);
  const state = ctx.pool.upload(new Float32Array(COUNTERS + 3 * steps), [COUNTERS + 3 * steps]);
  const kernel = ctx.kernels.get({ name: KERNEL, bindings: BINDINGS });
  const uniform = (step: number, mode: number, gate: number) =>
    packUniform([
      ["u32", step],
      ["u32", mode],
      ["u32", gate],
      ["u32", conditional.slots],
      ["f32", options.residual_diff_threshold],
      ["i32", options.max_cached_steps],
      ["i32", options.max_continuous_cached_steps],
      ["f32", options.max_accumulated_residual_diff ?? -1],
    ]);
  const dispatches = [
    bindKernel(
      ctx.gpu,
      kernel,
      [diff, conditional.plan, state, conditional.args],
      [1, 1, 1],
      uniform(0, 1, 0),
    ),
  ];
  return {
    dispatches,
    branches: conditional.branches,
    state,
    setStep(step, forced) {
      if (step < 0 || step >= steps) throw new KernelError(KERNEL, `step ${step} is outside 0..${steps - 1}`);
      const [mode, gate] = forced ? [forced.cached ? 2 : 1, GATES.indexOf(forced.gate)] : [0, 0];
      ctx.gpu.device.queue.writeBuffer(dispatches[0].uniform!, 0, uniform(step, mode, gate));
    },
    decode(values, count) {
      return Array.from({ length: count }, (_, s) => {
        const [cached, measured, gate] = values.subarray(COUNTERS + 3 * s, COUNTERS + 3 * s + 3);
        return { cached: cached === 1, diff: measured < 0 ? null : measured, gate: GATES[gate] as Gate };
      });
    },
    release() {
      disposeDispatches(dispatches);
      conditional.release();
      state.release();
    },
  };
}
