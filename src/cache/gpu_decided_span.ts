// DBCache's middle span and B with the decisions made on the GPU (cache-strategies.md, "What to go beyond
// with"): each step encodes the diff, the decision kernel and every conditional dispatch (the compute path
// over every stream, the replays, the calibrator's updates and approximations) as indirect dispatches; the
// decision zeroes the workgroup counts of what does not run. An unlisted B block (Bn_compute_blocks_ids) is
// its own small decision after its input diff, which the step's decision runs on cached steps only. No step
// waits on the GPU; the per-step log is read behind the loop. Steps the host decides (warmup, first step,
// masks) go through the same kernel in forced mode, so its counters and the calibrator's history stay whole.
// The slots come from StoredSpan.gpuSlots, whose snapshots are dispatches (copyByDispatch), since copies
// cannot be made conditional.
import type { GpuContext } from "../gpu/context.ts";
import type { Command } from "../gpu/kernel.ts";
import {
  type GpuBlockDecision,
  gpuBlockDecision,
  type GpuCacheDecision,
  gpuCacheDecision,
  type GpuDecisionOptions,
  type LoggedStep,
} from "./kernels/cache_decision.ts";
import type { ConditionalSlot } from "./kernels/conditional_dispatch.ts";
import { ON_CACHED } from "./kernels/decision_abi.ts";
import type { ResidualDiff } from "../ops/residual_diff.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { Decision } from "./decision.ts";

/** An unlisted B block: its input diff and its slots (stores ON_COMPUTE, itself SLOT.blockRuns, replay ON_CACHED). */
export interface JudgedBlock {
  diff: ResidualDiff;
  slots: ConditionalSlot[];
}

interface JudgedRule {
  decision: GpuBlockDecision;
  /** Where the block's diff dispatches sit among the step decision's slots. */
  diffSlots: [number, number];
}

export class GpuDecidedSpan {
  readonly #decision: GpuCacheDecision;
  readonly #spanSlots: number;
  readonly #judged: (JudgedRule | null)[];

  /** `judged`: one entry per B block, null where the block always runs. */
  constructor(
    ctx: GpuContext,
    private readonly diff: ResidualDiff,
    span: readonly ConditionalSlot[],
    judged: readonly (JudgedBlock | null)[],
    steps: number,
    options: GpuDecisionOptions & { non_compute_blocks_diff_threshold: number },
  ) {
    const diffSlots = judged.flatMap((j) =>
      j?.diff.dispatches.map((dispatch) => ({ dispatch, code: ON_CACHED })) ?? []
    );
    this.#decision = gpuCacheDecision(ctx, diff.result, [...span, ...diffSlots], steps, options);
    this.#spanSlots = span.length;
    let next = span.length;
    this.#judged = judged.map((j) => {
      if (!j) return null;
      const start = next;
      next += j.diff.dispatches.length;
      const threshold = options.non_compute_blocks_diff_threshold;
      const decision = gpuBlockDecision(ctx, this.#decision, j.diff.result, j.slots, threshold);
      return { decision, diffSlots: [start, next] };
    });
  }

  /**
   * One step: the diff (unless the host forced the step), the decision, the span's conditional dispatches,
   * then B (`bBlocks`): each block as it is, or, unlisted, through its own decision.
   */
  encode(step: number, forced: Decision | null, bBlocks: readonly Command[][], recorder: StepRecorder): void {
    const d = this.#decision;
    d.setStep(step, forced);
    // One encode() is one compute pass: a decision and the dispatches it sizes share one (on llvmpipe a pass
    // between them cost a cached step of mnist-dit ~4 ms of CPU and ~20 ms of wall-clock).
    recorder.encode([
      ...(forced ? [] : this.diff.dispatches),
      ...d.commands,
      ...d.slots.slice(0, this.#spanSlots),
    ]);
    for (const [j, block] of bBlocks.entries()) {
      const rule = this.#judged[j];
      if (!rule) {
        recorder.encode(block);
        continue;
      }
      recorder.encode([...d.slots.slice(...rule.diffSlots), rule.decision.command, ...rule.decision.slots]);
    }
  }

  /** Reads the log (one readback); call after a step's submit, so that it waits on that step only. */
  async settle(recorder: StepRecorder): Promise<LoggedStep[]> {
    return this.#decision.decode(await recorder.read(this.#decision.state));
  }

  release(): void {
    this.#decision.release();
    for (const rule of this.#judged) rule?.decision.release();
  }
}
