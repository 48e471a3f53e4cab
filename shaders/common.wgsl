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

// Flat index of element `item` of invocation `lid` when each workgroup of `lanes` invocations covers `items`
// consecutive runs of `lanes` elements, so that consecutive invocations touch consecutive elements
// (coalesced). The grid may be 2-D when one dimension cannot hold every workgroup (src/ops/grid.ts), hence
// the flat workgroup index wid.y * grid.x + wid.x. `items` and `lanes` are parameters because they are each
// shader's own overrides (ITEMS, WG), which not every shader declares.
fn grid_element(wid: vec3<u32>, grid: vec3<u32>, lid: u32, item: u32, items: u32, lanes: u32) -> u32 {
  return ((wid.y * grid.x + wid.x) * items + item) * lanes + lid;
}
