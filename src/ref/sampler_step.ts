// CPU reference of src/ops/sampler_step.ts, in float64, rounded to f32 once per element.

export interface SamplerUpdateRefOptions {
  a: number;
  b: number;
  c?: number;
  /** Required when v holds 2 * x.length values (conditional, then unconditional). */
  guidance?: number;
  noise?: ArrayLike<number>;
}

/** a*x + b*vg + c*z (returned; the op updates x in place). */
export function samplerUpdate(
  x: ArrayLike<number>,
  v: ArrayLike<number>,
  options: SamplerUpdateRefOptions,
): Float32Array {
  const { a, b, c = 0, guidance, noise } = options;
  const n = x.length;
  const guided = v.length === 2 * n;
  if (!guided && v.length !== n) throw new Error(`samplerUpdate: v has ${v.length} values for ${n} in x`);
  if (guided && guidance === undefined) throw new Error("samplerUpdate: guided v needs guidance");
  if (c !== 0 && noise?.length !== n) throw new Error("samplerUpdate: c != 0 needs noise of x's length");
  return Float32Array.from(x, (xe, e) => {
    const vg = guided ? v[n + e] + guidance! * (v[e] - v[n + e]) : v[e];
    return a * xe + b * vg + (c !== 0 ? c * noise![e] : 0);
  });
}
