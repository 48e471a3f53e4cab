// DBPrune's per-block decision on the GPU (shaders/prune_decision.wgsl): one tiny dispatch per prunable block
// and step turns the block's input diff into indirect arguments for the block or its residual replay, with
// the step counters and the dynamic threshold's running mean in one state tensor shared by all blocks. The
// host reads the log once, after the run. CPU reference: PruneDecision in src/cache/prune_decision.ts.
import type { GpuContext } from "../gpu/context.ts";
import { bindKernel, type Dispatch, disposeDispatches, KernelError, packUniform } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { PruneOptions } from "../cache/prune_decision.ts";
import {
  type Branches,
  branchSlots,
  type ConditionalDispatches,
  conditionalDispatches,
} from "./conditional_dispatch.ts";

const KERNEL = "prune_decision";
const BINDINGS = ["read", "read", "read_write", "read_write", "uniform"] as const;
const COUNTERS = 4;

export interface PrunableInput {
  /** The block input's diff against its stored input ([1 + samples], whole-tensor value first). */
  diff: Tensor;
  /** compute: the block (and its store, on refresh steps); cached: its residual replay. */
  branches: Branches;
}

export interface BlockDecision {
  /** The decision's dispatch; encode after the diff, before the branches. */
  dispatches: Dispatch[];
  branches: { compute: Dispatch[]; cached: Dispatch[] };
}

export interface LoggedPruneStep {
  /** Per block: pruned by the GPU's decision. */
  pruned: boolean[];
  /** Per block: the judged diff, null where no diff was judged. */
  diffs: (number | null)[];
  /** True when max_pruned_steps stopped pruning for the step. */
  limited: boolean;
}

export interface GpuPruneDecision {
  /** Per block, null where the block is not prunable. */
  blocks: (BlockDecision | null)[];
  state: Tensor;
  /** Sets every prunable block's uniform for the next step (queue writes). */
  setStep(step: number): void;
  decode(state: Float32Array, steps: number): LoggedPruneStep[];
  release(): void;
}

export function gpuPruneDecision(
  ctx: GpuContext,
  inputs: readonly (PrunableInput | null)[],
  steps: number,
  options: PruneOptions,
): GpuPruneDecision {
  if (!Number.isInteger(steps) || steps < 1) throw new KernelError(KERNEL, `steps ${steps} must be >= 1`);
  const columns = inputs.length;
  const log = new Float32Array(COUNTERS + 2 * steps * columns);
  for (let i = COUNTERS + 1; i < log.length; i += 2) log[i] = -1;
  const state = ctx.pool.upload(log, [log.length]);
  const kernel = ctx.kernels.get({ name: KERNEL, bindings: BINDINGS });
  const first = inputs.findIndex((b) => b !== null);
  const uniform = (step: number, column: number, slots: number) =>
    packUniform([
      ["u32", step],
      ["u32", column],
      ["u32", columns],
      ["u32", Number(column === first)],
      ["u32", slots],
      ["u32", Number(options.enable_dynamic_prune_threshold)],
      ["i32", options.max_pruned_steps],
      ["f32", options.residual_diff_threshold],
      ["f32", options.dynamic_prune_threshold_relax_ratio],
      ["f32", options.max_dynamic_prune_threshold],
    ]);
  const conditionals: ConditionalDispatches[] = [];
  const blocks = inputs.map((input, column): BlockDecision | null => {
    if (!input) return null;
    const conditional = conditionalDispatches(ctx, KERNEL, branchSlots(input.branches));
    conditionals.push(conditional);
    const dispatch = bindKernel(
      ctx.gpu,
      kernel,
      [input.diff, conditional.plan, state, conditional.args],
      [1, 1, 1],
      uniform(0, column, conditional.dispatches.length),
    );
    const compute = input.branches.compute.length;
    const branches = {
      compute: conditional.dispatches.slice(0, compute),
      cached: conditional.dispatches.slice(compute),
    };
    return { dispatches: [dispatch], branches };
  });
  return {
    blocks,
    state,
    setStep(step) {
      if (step < 0 || step >= steps) throw new KernelError(KERNEL, `step ${step} is outside 0..${steps - 1}`);
      blocks.forEach((b, column) => {
        if (!b) return;
        const slots = b.branches.compute.length + b.branches.cached.length;
        ctx.gpu.device.queue.writeBuffer(b.dispatches[0].uniform!, 0, uniform(step, column, slots));
      });
    },
    decode(values, count) {
      return Array.from({ length: count }, (_, s) => {
        const row = values.subarray(COUNTERS + 2 * s * columns, COUNTERS + 2 * (s + 1) * columns);
        const flags = Array.from({ length: columns }, (_, i) => row[2 * i]);
        return {
          pruned: flags.map((f) => f === 1),
          diffs: flags.map((_, i) => (row[2 * i + 1] < 0 ? null : row[2 * i + 1])),
          limited: flags.some((f) => f === 2),
        };
      });
    },
    release() {
      disposeDispatches(blocks.flatMap((b) => b?.dispatches ?? []));
      for (const c of conditionals) c.release();
      state.release();
    },
  };
}
