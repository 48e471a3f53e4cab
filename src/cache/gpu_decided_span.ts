// DBCache's middle span with the decision made on the GPU (cache-strategies.md, "What to go beyond with"):
// each step encodes the diff, the decision kernel and both the compute path and the replay path as
// indirect dispatches; the decision zeroes the workgroup counts of the path not taken. No step waits on the
// GPU; the per-step log is read once, after the run. The compute path's snapshots are dispatches here
// (axpy with beta 0) because buffer copies cannot be made conditional.
import type { GpuContext } from "../gpu/context.ts";
import type { Dispatch } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { axpy, type AxpyOp } from "../ops/axpy.ts";
import {
  type GpuCacheDecision,
  gpuCacheDecision,
  type GpuDecisionOptions,
  type LoggedStep,
} from "../ops/cache_decision.ts";
import type { ResidualDiff } from "../ops/residual_diff.ts";
import type { StepRecorder } from "../pipeline/step_recorder.ts";
import type { Decision } from "./decision.ts";

export interface SpanParts {
  /** [from, to] copies the compute path makes before M runs: keep R_F as the reference, snapshot M's input. */
  copies: [Tensor, Tensor][];
  /** M's blocks, then the store of M's residual. */
  compute: Dispatch[];
  /** The replay of M's stored residual. */
  cached: Dispatch[];
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
    this.#copies = parts.copies.map(([from, to]) => axpy(ctx, from, from, { alpha: 1, beta: 0, out: to }));
    this.#decision = gpuCacheDecision(
      ctx,
      diff.result,
      {
        compute: [...this.#copies.flatMap((c) => c.dispatches), ...parts.compute],
        cached: parts.cached,
      },
      steps,
      options,
    );
  }

  /** A step the GPU decides: diff, decision, then both paths (one of them runs with zero workgroups). */
  encodeDecided(step: number, recorder: StepRecorder): void {
    const d = this.#decision;
    d.setStep(step, null);
    recorder.encode([...this.diff.dispatches, ...d.dispatches, ...d.branches.compute, ...d.branches.cached]);
  }

  /** A step the host decided (warmup, first step, mask): only the counters and the log; the caller runs its path. */
  encodeForced(step: number, decision: Decision, recorder: StepRecorder): void {
    this.#decision.setStep(step, decision);
    recorder.encode(this.#decision.dispatches);
  }

  /** Reads the log (one readback) after the run's last step. */
  async settle(recorder: StepRecorder): Promise<LoggedStep[]> {
    return this.#decision.decode(await recorder.read(this.#decision.state), this.steps);
  }

  release(): void {
    for (const c of this.#copies) c.release();
    this.#decision.release();
  }
}
