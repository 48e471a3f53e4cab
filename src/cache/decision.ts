// canCache (cache-strategies.md, DBCache): the gates in the doc's order, first that applies wins, with the
// per-request counters they read. The measured diff comes in as a plain number so that this unit can later
// move onto the GPU (a decision buffer driving indirect dispatch) without changing its rules.

/** Gate names; their indices are the gate codes of shaders/cache_decision.wgsl. */
export const GATES = [
  "warmup",
  "no_reference",
  "mask_compute",
  "mask_static",
  "max_cached_steps",
  "max_continuous_cached_steps",
  "max_accumulated_residual_diff",
  "max_pruned_steps",
  "threshold_off",
  "similar",
  "not_similar",
  /** TeaCache and EasyCache always compute the last step. */
  "last_step",
  /** MagCache: the skip run reached max_skip_steps. */
  "max_skip_steps",
  /** EasyCache: no transformation rate measured yet (two computed steps are needed). */
  "no_rate",
] as const;

export type Gate = (typeof GATES)[number];

export interface DecisionOptions {
  residual_diff_threshold: number;
  max_warmup_steps: number;
  warmup_interval: number;
  /** < 0: no limit. */
  max_cached_steps: number;
  /** < 0: no limit. */
  max_continuous_cached_steps: number;
  /** null: gate off. */
  max_accumulated_residual_diff: number | null;
  /** One entry per step (1 = compute), or null for no mask. */
  mask: readonly (0 | 1)[] | null;
  steps_computation_policy: "static" | "dynamic";
}

export interface Decision {
  cached: boolean;
  gate: Gate;
}

/** "Similar" in every cache rule: a threshold <= 0 never caches. */
export function similar(diff: number, threshold: number): boolean {
  return threshold > 0 && diff < threshold;
}

export function isWarmupStep(step: number, maxWarmupSteps: number, interval: number): boolean {
  return step < maxWarmupSteps && step % interval === 0;
}

/**
 * The gates that need only the step index and whether any step computed yet, in the doc's order; the host
 * decides these even when the GPU decides the rest (shaders/cache_decision.wgsl).
 */
export function stepGate(o: DecisionOptions, step: number, computedBefore: boolean): Decision | null {
  if (isWarmupStep(step, o.max_warmup_steps, o.warmup_interval)) return { cached: false, gate: "warmup" };
  // Nothing is stored before the first computed step (the doc's warmup normally covers this).
  if (!computedBefore) return { cached: false, gate: "no_reference" };
  if (o.mask) {
    if (o.mask[step] === 1) return { cached: false, gate: "mask_compute" };
    if (o.steps_computation_policy === "static") return { cached: true, gate: "mask_static" };
  }
  return null;
}

export class CacheDecision {
  #cachedSteps = 0;
  #consecutiveCached = 0;
  #accumulatedDiff = 0;
  #computedSteps = 0;

  constructor(private readonly options: DecisionOptions) {}

  get cachedSteps(): number {
    return this.#cachedSteps;
  }

  get consecutiveCached(): number {
    return this.#consecutiveCached;
  }

  get accumulatedDiff(): number {
    return this.#accumulatedDiff;
  }

  /** False when a gate before the threshold decides `step`, so no diff (and no readback) is needed. */
  needsDiff(step: number): boolean {
    return this.#gateBeforeDiff(step) === null;
  }

  /** Decides `step` and updates the counters; `diff` is required exactly when needsDiff(step). */
  decide(step: number, diff: number | null): Decision {
    const early = this.#gateBeforeDiff(step);
    let decision: Decision;
    if (early) {
      decision = early;
    } else {
      if (diff === null) throw new Error(`cache decision at step ${step} needs the measured residual diff`);
      this.#accumulatedDiff += diff;
      const cached = similar(diff, this.options.residual_diff_threshold);
      decision = { cached, gate: cached ? "similar" : "not_similar" };
    }
    if (decision.cached) {
      this.#cachedSteps++;
      this.#consecutiveCached++;
    } else {
      this.#computedSteps++;
      this.#consecutiveCached = 0;
    }
    return decision;
  }

  #gateBeforeDiff(step: number): Decision | null {
    const o = this.options;
    const compute = (gate: Gate): Decision => ({ cached: false, gate });
    const byStep = stepGate(o, step, this.#computedSteps > 0);
    if (byStep) return byStep;
    if (o.max_cached_steps >= 0 && this.#cachedSteps >= o.max_cached_steps) {
      return compute("max_cached_steps");
    }
    if (o.max_continuous_cached_steps >= 0 && this.#consecutiveCached >= o.max_continuous_cached_steps) {
      return compute("max_continuous_cached_steps");
    }
    const maxAccumulated = o.max_accumulated_residual_diff;
    if (maxAccumulated !== null && this.#accumulatedDiff >= maxAccumulated) {
      return compute("max_accumulated_residual_diff");
    }
    if (o.residual_diff_threshold <= 0) return compute("threshold_off");
    return null;
  }
}
