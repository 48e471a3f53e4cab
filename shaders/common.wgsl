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

// Conditions of the dispatches a cache decision kernel drives (src/ops/conditional_dispatch.ts, SLOT in
// src/ops/cache_decision.ts): the compute path, the cached path, and TaylorSeer's dispatches, which also
// depend on how many history entries it holds.
const SLOT_ON_COMPUTE: u32 = 0u;
const SLOT_ON_CACHED: u32 = 1u;
const SLOT_CACHED_WITHOUT_HISTORY: u32 = 2u; // the plain replay, while TaylorSeer has nothing stored
const SLOT_CACHED_WITH_HISTORY: u32 = 3u;
const SLOT_KEEP_PREVIOUS: u32 = 0x100u;     // + i: computed, entry i exists
const SLOT_DIFFERENCE: u32 = 0x200u;        // + i: computed, i < min(entries, derivatives)
const SLOT_TERM: u32 = 0x300u;              // + i: cached, entry i exists

fn decision_slot_runs(code: u32, cached: bool, entries: u32, derivatives: u32) -> bool {
  let i = code & 0xffu;
  switch (code & 0xf00u) {
    case SLOT_KEEP_PREVIOUS: {
      return !cached && i < entries;
    }
    case SLOT_DIFFERENCE: {
      return !cached && i < min(entries, derivatives);
    }
    case SLOT_TERM: {
      return cached && i < entries;
    }
    default: {
      switch (code) {
        case SLOT_ON_COMPUTE: {
          return !cached;
        }
        case SLOT_ON_CACHED: {
          return cached;
        }
        case SLOT_CACHED_WITHOUT_HISTORY: {
          return cached && entries == 0u;
        }
        default: {
          return cached && entries > 0u;
        }
      }
    }
  }
}

// TaylorSeer's axpy weights (alpha, beta) for a slot, `since` steps after the last computed one: divided
// differences (x = d_prev[i], y = d_cur[i]) take (-1/w, 1/w); term i of the extrapolation takes (k^i / i!, 1).
fn decision_slot_weights(code: u32, since: f32) -> vec2<f32> {
  let i = code & 0xffu;
  if ((code & 0xf00u) == SLOT_DIFFERENCE) {
    return vec2<f32>(-1.0 / since, 1.0 / since);
  }
  if ((code & 0xf00u) == SLOT_TERM) {
    var weight = 1.0;
    for (var t = 1u; t <= i; t++) {
      weight *= since / f32(t);
    }
    return vec2<f32>(weight, 1.0);
  }
  return vec2<f32>(0.0, 0.0);
}
