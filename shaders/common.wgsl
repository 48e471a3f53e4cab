// common: prepended to every shader file (WGSL has no includes). Keep it to small pure functions.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn gelu_tanh(x: f32) -> f32 {
  // tanh saturates for |u| > 10; clamping keeps exp() finite on drivers that compute tanh through it.
  let u = clamp(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x), -10.0, 10.0);
  return 0.5 * x * (1.0 + tanh(u));
}

fn silu(x: f32) -> f32 {
  return x / (1.0 + exp(-x));
}
