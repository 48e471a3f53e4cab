// CPU reference of src/ops/sampler_step.ts, in float64, rounded to f32 once per element.
import type { SamplerStepCoefficients } from "../ops/sampler_step.ts";

export interface SamplerStepRefOptions extends SamplerStepCoefficients {
  guidance?: number;
  noise?: ArrayLike<number>;
  /** history[k]: the x0 of k + 1 steps before (read where a weight is nonzero). */
  history?: readonly ArrayLike<number>[];
  /** The previous step's s (read by the corrector). */
  last?: ArrayLike<number>;
  /** Samples in x; m holds B (or 2B when guided) samples of possibly more values each. */
  batch: number;
}

/** Σ_k weights[k] * history[k][e] over the nonzero weights. */
function historyTerm(
  weights: readonly number[],
  history: SamplerStepRefOptions["history"],
  e: number,
): number {
  return weights.reduce((sum, w, k) => (w !== 0 ? sum + w * history![k][e] : sum), 0);
}

/** Returns the new x, this step's x0, and s (the corrected sample, else x): the next step's last. */
export function samplerStep(
  x: ArrayLike<number>,
  m: ArrayLike<number>,
  o: SamplerStepRefOptions,
): { x: Float32Array; x0: Float32Array; sample: Float32Array } {
  const perSample = x.length / o.batch;
  const guided = o.guidance !== undefined;
  const mStride = m.length / (guided ? 2 * o.batch : o.batch);
  const half = o.batch * mStride;
  const x0 = new Float32Array(x.length);
  const sample = new Float32Array(x.length);
  const { corrector, next } = o;
  const out = Float32Array.from(x, (value, e) => {
    const at = Math.floor(e / perSample) * mStride + (e % perSample);
    const model = guided ? m[half + at] + o.guidance! * (m[at] - m[half + at]) : m[at];
    let data = o.x0.sample * value + o.x0.model * model;
    if (o.x0.clip !== null) data = Math.min(o.x0.clip, Math.max(-o.x0.clip, data));
    x0[e] = data;
    const s = corrector
      ? corrector.last * o.last![e] + corrector.x0 * data + historyTerm(corrector.history, o.history, e)
      : value;
    sample[e] = s;
    return next.sample * s + next.x0 * data + historyTerm(next.history, o.history, e) + next.model * model +
      (next.noise !== 0 ? next.noise * o.noise![e] : 0);
  });
  return { x: out, x0, sample };
}
