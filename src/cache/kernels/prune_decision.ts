// DBPrune's per-block decision on the GPU (shaders/prune_decision.wgsl): one tiny dispatch per prunable block
// and step turns the block's input diff into indirect arguments for the block or its residual replay (and
// TaylorSeer's update or extrapolation, weighted from the block's own history), with the step counters and
// the dynamic threshold's running mean in one state tensor shared by all blocks. The host reads the log once,
// after the run. CPU references: PruneDecision (src/cache/prune_decision.ts), TaylorSeerReference.
import type { GpuContext } from "../../gpu/context.ts";
import { bindKernel, type Command, type Dispatch, disposeDispatches, KernelError } from "../../gpu/kernel.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { PruneOptions } from "../prune_decision.ts";
import { uniformLayout } from "../../gpu/uniform_layout.ts";
import { decisionKernelSource } from "./decision_abi.ts";
import {
  type ConditionalDispatches,
  conditionalDispatches,
  type ConditionalSlot,
  weightCopies,
} from "./conditional_dispatch.ts";

const KERNEL = "prune_decision";
const BINDINGS = ["read", "read", "read_write", "read_write", "read_write", "uniform"] as const;
const COUNTERS = 4;

const PARAMS = uniformLayout("Params", [
  { name: "step", type: "u32" },
  { name: "column", type: "u32", note: "the block's index in the history and log rows" },
  { name: "blocks", type: "u32", note: "row length" },
  { name: "first", type: "u32", note: "1 at the step's first prunable block" },
  { name: "slots", type: "u32", note: "conditional dispatches of this block" },
  { name: "dynamic", type: "u32", note: "1: dynamic threshold on" },
  { name: "max_pruned", type: "i32", note: "< 0: no limit" },
  { name: "threshold", type: "f32" },
  { name: "relax", type: "f32" },
  { name: "cap", type: "f32" },
  { name: "mode", type: "u32", note: "0: decide here; 1: the host forced the block to run" },
  { name: "refresh", type: "u32", note: "1: a block that runs stores its input and residual this step" },
  {
    name: "derivatives",
    type: "u32",
    note: "calibratorHistory: TaylorSeer's order n, 1 for FoCa, 0 without",
  },
]);

export interface PrunableInput {
  /** The block input's diff against its stored input ([1 + samples], whole-tensor value first). */
  diff: Tensor;
  /** The block's conditional dispatches, in encoding order. */
  slots: ConditionalSlot[];
}

export interface BlockDecision {
  /** The decision dispatch and its weight copies; encode after the diff, before the slots. */
  commands: Command[];
  /** The input's slots as indirect dispatches, same order. */
  slots: Dispatch[];
}

export interface LoggedPruneStep {
  /** Per block: pruned by the GPU's decision. */
  pruned: boolean[];
  /** Per block: the judged diff, null where no diff was judged. */
  diffs: (number | null)[];
  /** True when max_pruned_steps stopped pruning for the step. */
  limited: boolean;
}

export interface PruneStep {
  /** The host makes every block run (warmup, first step, threshold off): nothing is judged. */
  forced: boolean;
  /** A block that runs stores its input and residual (and updates TaylorSeer) this step. */
  refresh: boolean;
}

export interface GpuPruneDecision {
  /** Per block, null where the block is not prunable. */
  blocks: (BlockDecision | null)[];
  state: Tensor;
  /** Sets every prunable block's uniform for the next step (queue writes). */
  setStep(step: number, how: PruneStep): void;
  decode(state: Float32Array): LoggedPruneStep[];
  release(): void;
}

export function gpuPruneDecision(
  ctx: GpuContext,
  inputs: readonly (PrunableInput | null)[],
  steps: number,
  options: PruneOptions & { derivatives?: number },
): GpuPruneDecision {
  if (!Number.isInteger(steps) || steps < 1) throw new KernelError(KERNEL, `steps ${steps} must be >= 1`);
  const columns = inputs.length;
  const logStart = COUNTERS + 2 * columns;
  const initial = new Float32Array(logStart + 2 * steps * columns);
  // No block has stored anything yet (last step -1); no diff judged yet (-1).
  for (let i = COUNTERS; i < logStart; i += 2) initial[i] = -1;
  for (let i = logStart + 1; i < initial.length; i += 2) initial[i] = -1;
  const state = ctx.pool.upload(initial, [initial.length]);
  const kernel = ctx.kernels.get({
    name: KERNEL,
    source: decisionKernelSource(KERNEL, PARAMS),
    bindings: BINDINGS,
  });
  const first = inputs.findIndex((b) => b !== null);
  const uniform = (step: number, column: number, slots: number, how: PruneStep) =>
    PARAMS.pack({
      step,
      column,
      blocks: columns,
      first: Number(column === first),
      slots,
      dynamic: Number(options.enable_dynamic_prune_threshold),
      max_pruned: options.max_pruned_steps,
      threshold: options.residual_diff_threshold,
      relax: options.dynamic_prune_threshold_relax_ratio,
      cap: options.max_dynamic_prune_threshold,
      mode: Number(how.forced),
      refresh: Number(how.refresh),
      derivatives: options.derivatives ?? 0,
    });
  const owned: { conditional: ConditionalDispatches; weights: Tensor; decision: Dispatch }[] = [];
  const blocks = inputs.map((input, column): BlockDecision | null => {
    if (!input) return null;
    const conditional = conditionalDispatches(ctx, KERNEL, input.slots);
    const weights = ctx.pool.tensor([2 * Math.max(input.slots.length, 1)]);
    const decision = bindKernel(
      ctx.gpu,
      kernel,
      [input.diff, conditional.plan, state, conditional.args, weights],
      [1, 1, 1],
      uniform(0, column, input.slots.length, { forced: true, refresh: false }),
    );
    owned.push({ conditional, weights, decision });
    return {
      commands: [decision, ...weightCopies(KERNEL, weights, input.slots)],
      slots: conditional.dispatches,
    };
  });
  return {
    blocks,
    state,
    setStep(step, how) {
      if (step < 0 || step >= steps) throw new KernelError(KERNEL, `step ${step} is outside 0..${steps - 1}`);
      blocks.forEach((b, column) => {
        if (!b) return;
        const decision = b.commands[0] as Dispatch;
        ctx.gpu.device.queue.writeBuffer(decision.uniform!, 0, uniform(step, column, b.slots.length, how));
      });
    },
    decode(values) {
      return Array.from({ length: steps }, (_, s) => {
        const row = values.subarray(logStart + 2 * s * columns, logStart + 2 * (s + 1) * columns);
        const flags = Array.from({ length: columns }, (_, i) => row[2 * i]);
        return {
          pruned: flags.map((f) => f === 1),
          diffs: flags.map((_, i) => (row[2 * i + 1] < 0 ? null : row[2 * i + 1])),
          limited: flags.some((f) => f === 2),
        };
      });
    },
    release() {
      for (const o of owned) {
        disposeDispatches([o.decision]);
        o.conditional.release();
        o.weights.release();
      }
      state.release();
    },
  };
}
