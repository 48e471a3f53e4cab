// CPU reference of src/ops/sampler_step.ts, in float64, rounded to f32 once per element.
import type { SamplerStepCoefficients } from "../ops/sampler_step.ts";

export interface SamplerStepRefOptions extends SamplerStepCoefficients {
  guidance?: number;
  noise?: ArrayLike<number>;
  /** The previous x0 (read when next.previous != 0). */
  previous?: ArrayLike<number>;
  /** Samples in x; m holds B (or 2B when guided) samples of possibly more values each. */
  batch: number;
}

/** Returns the new x and this step's x0. */
export function samplerStep(
  x: ArrayLike<number>,
  m: ArrayLike<number>,
  o: SamplerStepRefOptions,
): { x: Float32Array; x0: Float32Array } {
  const perSample = x.length / o.batch;
  const guided = o.guidance !== undefined;
  const mStride = m.length / (guided ? 2 * o.batch : o.batch);
  const half = o.batch * mStride;
  const x0 = new Float32Array(x.length);
  const next = Float32Array.from(x, (sample, e) => {
    const at = Math.floor(e / perSample) * mStride + (e % perSample);
    const model = guided ? m[half + at] + o.guidance! * (m[at] - m[half + at]) : m[at];
    let data = o.x0.sample * sample + o.x0.model * model;
    if (o.x0.clip !== null) data = Math.min(o.x0.clip, Math.max(-o.x0.clip, data));
    x0[e] = data;
    return o.next.sample * sample + o.next.x0 * data + o.next.model * model +
      (o.next.previous !== 0 ? o.next.previous * o.previous![e] : 0) +
      (o.next.noise !== 0 ? o.next.noise * o.noise![e] : 0);
  });
  return { x: next, x0 };
}
