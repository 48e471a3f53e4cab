// MagCache's decision (diffusers' MagCacheConfig / mag_cache hooks, option names kept): the ratio of the
// block list's residual magnitude between consecutive steps is a property of the model and its scheduler,
// measured once (`deno task calibrate --strategy magcache`). While the ratios multiplied since the last
// computed step stay near 1, the residual of that step is a good stand-in: the accumulated |1 - ratio|
// error is compared with `threshold`, and at most `max_skip_steps` steps in a row are skipped. Nothing is
// measured at run time, so every decision is known before the run.
import type { Decision } from "./decision.ts";
import type { ListRule } from "./whole_list_cache.ts";

export interface MagCacheOptions {
  threshold: number;
  max_skip_steps: number;
  retention_ratio: number;
  /** One ratio per step of this request. */
  mag_ratios: readonly number[];
  steps: number;
}

/** diffusers' nearest_interp: a calibration of another step count, resampled onto `steps` entries. */
export function nearestInterp(ratios: readonly number[], steps: number): number[] {
  if (steps === 1) return ratios.slice(-1);
  const scale = (ratios.length - 1) / (steps - 1);
  // torch.round rounds half to even; Math.round rounds half up.
  return Array.from({ length: steps }, (_, i) => ratios[roundHalfEven(i * scale)]);
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export class MagCacheRule implements ListRule {
  readonly measures = "none";
  #ratio = 1;
  #error = 0;
  #skipped = 0;
  #computed = false;

  constructor(private readonly o: MagCacheOptions) {}

  /** The first step that may be skipped (diffusers' int(retention_ratio * steps + 0.5)). */
  get retentionSteps(): number {
    return Math.floor(this.o.retention_ratio * this.o.steps + 0.5);
  }

  wants(): boolean {
    return false;
  }

  decide(step: number): Decision & { diff: number | null } {
    const decision = this.#decide(step);
    this.#computed ||= !decision.cached;
    return decision;
  }

  #decide(step: number): Decision & { diff: number | null } {
    if (step < this.retentionSteps) return { cached: false, gate: "warmup", diff: null };
    if (this.o.threshold <= 0) return { cached: false, gate: "threshold_off", diff: null };
    this.#ratio *= this.o.mag_ratios[step] ?? 1;
    this.#skipped++;
    this.#error += Math.abs(1 - this.#ratio);
    const diff = this.#error;
    let gate: Decision["gate"] | null = null;
    if (!this.#computed) gate = "no_reference";
    else if (this.#error > this.o.threshold) gate = "not_similar";
    else if (this.#skipped > this.o.max_skip_steps) gate = "max_skip_steps";
    if (gate === null) return { cached: true, gate: "similar", diff };
    [this.#ratio, this.#error, this.#skipped] = [1, 0, 0];
    return { cached: false, gate, diff };
  }
}
