// DBCache's middle span with the decision made on the GPU (cache-strategies.md, "What to go beyond with"):
// each step encodes the diff, the decision kernel and every conditional dispatch (the compute path, the
// replay, TaylorSeer's update and approximation) as indirect dispatches; the decision zeroes the workgroup
// counts of what does not run. No step waits on the GPU; the per-step log is read once, after the run. Steps
// the host decides (warmup, first step, masks) go through the same kernel in forced mode, so its counters and
// TaylorSeer's history stay whole. The compute path's snapshots are dispatches here (copyByDispatch).
import type { GpuContext } from "../gpu/context.ts";
import type { Dispatch } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type AxpyOp, copyByDispatch } from "../ops/axpy.ts";
import {
  type GpuCacheDecision,
  gpuCacheDecision,
  type GpuDecisionOptions,
  type LoggedStep,
} from "./kernels/cache_decision.ts";
import type { ConditionalSlot } from "./kernels/conditional_dispatch.ts";
import { ON_CACHED, ON_COMPUTE, SLOT } from "./kernels/decision_abi.ts";
import type { ResidualDiff } from "../ops/residual_diff.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { TaylorSeer } from "./calibrators/taylor_seer.ts";
import type { Decision } from "./decision.ts";

export interface SpanParts {
  /** [from, to] copies the compute path makes before M runs: keep R_F as the reference, snapshot M's input. */
  copies: [Tensor, Tensor][];
  /** M's blocks, then the store of M's residual. */
  compute: Dispatch[];
  /** The replay of M's stored residual. */
  cached: Dispatch[];
  /** Updates after the store on computed steps; approximates instead of the replay once it has history. */
  seer: TaylorSeer | null;
}

export class GpuDecidedSpan {
  readonly #copies: AxpyOp[];
  readonly #decision: GpuCacheDecision;

  constructor(
    ctx: GpuContext,
    private readonly diff: ResidualDiff,
    parts: SpanParts,
    private readonly steps: number,
    options: GpuDecisionOptions,
  ) {
    this.#copies = parts.copies.map(([from, to]) => copyByDispatch(ctx, from, to));
    const seer = parts.seer?.gpuSlots();
    const slot = (code: number) => (dispatch: Dispatch): ConditionalSlot => ({ dispatch, code });
    const slots = [
      ...[...this.#copies.flatMap((c) => c.dispatches), ...parts.compute].map(slot(ON_COMPUTE)),
      ...(seer?.compute ?? []),
      ...parts.cached.map(slot(seer ? SLOT.cachedWithoutHistory : ON_CACHED)),
      ...(seer?.cached ?? []),
    ];
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
    for (const c of this.#copies) c.release();
    this.#decision.release();
  }
}
