// TeaCache's decision (the authors' TeaCache4FLUX / TeaCache4Wan2.1, option names kept): the relative L1
// change of the first block's timestep-modulated input between consecutive steps, rescaled by a polynomial
// fitted per model and scheduler (`deno task calibrate --strategy teacache`) into an estimate of the output's
// change, is accumulated since the last computed step; below `rel_l1_thresh` the step reuses that step's
// residual. The first `ret_steps` steps and the last one always compute.
import type { Decision } from "./decision.ts";
import type { ListRule, MeanPair } from "./whole_list_cache.ts";

export interface TeaCacheOptions {
  rel_l1_thresh: number;
  /** Polynomial coefficients, highest power first (numpy's poly1d order). */
  coefficients: readonly number[];
  ret_steps: number;
  steps: number;
}

/** numpy.poly1d(coefficients)(x). */
export function polynomial(coefficients: readonly number[], x: number): number {
  return coefficients.reduce((acc, c) => acc * x + c, 0);
}

/** mean|a - b| / mean|a| from the pair the GPU measures; an all-zero reference is "all change". */
export function relativeL1([diff, ref]: MeanPair): number {
  if (ref === 0) return diff === 0 ? 0 : 1e30;
  return diff / ref;
}

export class TeaCacheRule implements ListRule {
  readonly measures = "modulated_input";
  #accumulated = 0;

  constructor(private readonly o: TeaCacheOptions) {}

  wants(step: number): boolean {
    const o = this.o;
    return step >= Math.max(o.ret_steps, 1) && step !== o.steps - 1 && o.rel_l1_thresh > 0;
  }

  /** `measured`: the modulated input against the previous step's, where wants(step). */
  decide(step: number, measured: MeanPair | null): Decision & { diff: number | null } {
    const o = this.o;
    const compute = (gate: Decision["gate"], diff: number | null = null) => {
      this.#accumulated = 0;
      return { cached: false, gate, diff };
    };
    if (step < Math.max(o.ret_steps, 1)) return compute("warmup");
    if (step === o.steps - 1) return compute("last_step");
    if (o.rel_l1_thresh <= 0) return compute("threshold_off");
    if (measured === null) throw new Error(`teacache: step ${step} needs the modulated input's change`);
    this.#accumulated += polynomial(o.coefficients, relativeL1(measured));
    const diff = this.#accumulated;
    if (this.#accumulated < o.rel_l1_thresh) return { cached: true, gate: "similar", diff };
    return compute("not_similar", diff);
  }
}
