// EasyCache's decision (the authors' EasyCache4Wan2.1, option names kept), runtime-adaptive with no
// calibration: between two computed steps the output changed k times as much as the input (the
// transformation rate, mean|out - out'| / mean|x - x'|). A later step's output change is estimated as
// k * mean|x_t - x_{t-1}| / mean|out'| and accumulated since the last computed step; below `thresh` the step
// reuses that step's residual (out' - x'). The first `ret_steps` steps and the last one always compute.
// The reference measures the model's raw input and output; here they are the block list's image stream
// before and after the blocks (the seam strategies see), and the prologue and epilogue still run.
import type { Decision } from "./decision.ts";
import { relativeL1 } from "./teacache.ts";
import type { ListRule, MeanPair } from "./whole_list_cache.ts";

export interface EasyCacheOptions {
  thresh: number;
  ret_steps: number;
  steps: number;
}

/** What the strategy measured after a computed step. */
export interface ComputedMeasures {
  /** (mean|out - out'|, mean|out|): against the previous computed step's output. */
  output: MeanPair;
  /** (mean|x' - x|, mean|x'|): the previous computed step's input against this one's. */
  input: MeanPair;
}

export class EasyCacheRule implements ListRule {
  readonly measures = "input";
  #accumulated = 0;
  /** The transformation rate k, once two steps computed. */
  #rate: number | null = null;
  /** mean|out| of the last computed step. */
  #outputMean: number | null = null;

  constructor(private readonly o: EasyCacheOptions) {}

  /** The rate needs two computed steps before a measure means anything. */
  wants(step: number, computed: number): boolean {
    const o = this.o;
    return step >= o.ret_steps && step !== o.steps - 1 && o.thresh > 0 && computed >= 2;
  }

  /** `measured`: (mean|x_t - x_{t-1}|, mean|x_{t-1}|) of the list's input, where wants(step). */
  decide(step: number, measured: MeanPair | null): Decision & { diff: number | null } {
    const o = this.o;
    const compute = (gate: Decision["gate"], diff: number | null = null) => {
      this.#accumulated = 0;
      return { cached: false, gate, diff };
    };
    if (step < o.ret_steps) return compute("warmup");
    if (step === o.steps - 1) return compute("last_step");
    if (o.thresh <= 0) return compute("threshold_off");
    if (this.#rate === null || this.#outputMean === null) {
      return { cached: false, gate: "no_rate", diff: null };
    }
    if (measured === null) throw new Error(`easycache: step ${step} needs the input's change`);
    this.#accumulated += this.#rate * relativeL1([measured[0], this.#outputMean]);
    const diff = this.#accumulated;
    if (this.#accumulated < o.thresh) return { cached: true, gate: "similar", diff };
    return compute("not_similar", diff);
  }

  /** After a computed step, before the next decision. */
  computed(m: ComputedMeasures, first: boolean): void {
    if (!first) this.#rate = relativeL1([m.output[0], m.input[0]]);
    this.#outputMean = m.output[1];
  }
}
