// DBPrune's rules (cache-strategies.md), kept apart from the GPU work like CacheDecision: which blocks may be
// pruned, the step gates (warmup, max_pruned_steps, threshold off), the per-block threshold with its optional
// dynamic relaxation, and when a computed block refreshes its stored input and residual.
import { type Gate, isWarmupStep, similar } from "./decision.ts";
import type { ResolvedDbPrune } from "./options.ts";

export type PruneOptions = Omit<ResolvedDbPrune, "strategy" | "calibrator" | "notes" | "steps" | "cfg">;

export class PruneDecision {
  readonly #prunable: boolean[];
  #prunedSteps = 0;
  /** Diffs measured so far in the current step (the dynamic threshold's mean). */
  #stepDiffs: number[] = [];
  #prunedThisStep = 0;

  constructor(private readonly options: PruneOptions) {
    const { blocks, Fn, Bn, non_prune_blocks_ids } = options;
    this.#prunable = Array.from(
      { length: blocks },
      (_, i) => i >= Fn && i < blocks - Bn && !non_prune_blocks_ids.includes(i),
    );
  }

  /** First Fn, last Bn and non_prune_blocks_ids always run. */
  prunable(block: number): boolean {
    return this.#prunable[block];
  }

  get prunedSteps(): number {
    return this.#prunedSteps;
  }

  /** A gate that makes every block of `step` run (no diff is measured), or null: each block decides. */
  beginStep(step: number): Gate | null {
    const o = this.options;
    this.#stepDiffs = [];
    this.#prunedThisStep = 0;
    if (isWarmupStep(step, o.max_warmup_steps, o.warmup_interval)) return "warmup";
    if (o.max_pruned_steps >= 0 && this.#prunedSteps >= o.max_pruned_steps) return "max_pruned_steps";
    if (o.residual_diff_threshold <= 0) return "threshold_off";
    return null;
  }

  /** The threshold the next block is judged by, given the diffs already measured in this step. */
  threshold(): number {
    const o = this.options;
    const positive = this.#stepDiffs.filter((d) => d > 0);
    if (!o.enable_dynamic_prune_threshold || positive.length === 0) return o.residual_diff_threshold;
    const mean = positive.reduce((a, b) => a + b, 0) / positive.length;
    const relaxed = mean * o.dynamic_prune_threshold_relax_ratio;
    return relaxed < o.max_dynamic_prune_threshold
      ? Math.max(relaxed, o.residual_diff_threshold)
      : o.residual_diff_threshold;
  }

  /** Records a prunable block's input diff; true: prune it. */
  decideBlock(diff: number): boolean {
    const pruned = similar(diff, this.threshold());
    this.#stepDiffs.push(diff);
    if (pruned) this.#prunedThisStep++;
    return pruned;
  }

  /** A block that runs stores its input and residual when it has none yet or on every interval-th step. */
  shouldStore(step: number, hasStored: boolean): boolean {
    return !hasStored || step % this.options.residual_cache_update_interval === 0;
  }

  /** Closes the step; returns how many blocks it pruned. */
  endStep(): number {
    if (this.#prunedThisStep > 0) this.#prunedSteps++;
    return this.#prunedThisStep;
  }
}
