// DBCache's middle span with the decision made on the GPU (cache-strategies.md, "What to go beyond with"):
// each step encodes the diff, the decision kernel and every conditional dispatch (the compute path over every
// stream, the replays, TaylorSeer's updates and approximations) as indirect dispatches; the decision zeroes the
// workgroup counts of what does not run. No step waits on the GPU; the per-step log is read once, after the
// run. Steps the host decides (warmup, first step, masks) go through the same kernel in forced mode, so its
// counters and TaylorSeer's history stay whole. The slots come from StoredSpan.gpuSlots, whose snapshots are
// dispatches (copyByDispatch), since copies cannot be made conditional.
import type { GpuContext } from "../gpu/context.ts";
import {
  type GpuCacheDecision,
  gpuCacheDecision,
  type GpuDecisionOptions,
  type LoggedStep,
} from "./kernels/cache_decision.ts";
import type { ConditionalSlot } from "./kernels/conditional_dispatch.ts";
import type { ResidualDiff } from "../ops/residual_diff.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { Decision } from "./decision.ts";

export class GpuDecidedSpan {
  readonly #decision: GpuCacheDecision;

  constructor(
    ctx: GpuContext,
    private readonly diff: ResidualDiff,
    slots: readonly ConditionalSlot[],
    steps: number,
    options: GpuDecisionOptions,
  ) {
    this.#decision = gpuCacheDecision(ctx, diff.result, slots, steps, options);
  }

  /** One step: the diff (unless the host forced the step), the decision, then every conditional dispatch. */
  encode(step: number, forced: Decision | null, recorder: StepRecorder): void {
    const d = this.#decision;
    d.setStep(step, forced);
    recorder.encode([...(forced ? [] : this.diff.dispatches), ...d.commands, ...d.slots]);
  }

  /** Reads the log (one readback) after the run's last step. */
  async settle(recorder: StepRecorder): Promise<LoggedStep[]> {
    return this.#decision.decode(await recorder.read(this.#decision.state));
  }

  release(): void {
    this.#decision.release();
  }
}
