// prelude of the cache decision kernels (shaders/cache_decision.wgsl, shaders/prune_decision.wgsl): when each
// conditional dispatch runs and the calibrators' weights for it. The SLOT_* codes are generated from
// src/cache/kernels/decision_abi.ts, which the TypeScript side uses too: the compute path, the cached path,
// and the calibrators' dispatches (TaylorSeer's, FoCa's), which also depend on how many history entries they
// hold (FoCa: 1 after one update, 2 after more).

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
        case SLOT_FOCA_ANCHOR: {
          return cached && entries == 1u;
        }
        case SLOT_FOCA_FORECAST, SLOT_FOCA_SLOPES: {
          return cached && entries >= 2u;
        }
        default: {
          return cached && entries > 0u;
        }
      }
    }
  }
}

// The calibrators' axpy weights (alpha, beta) for a slot, `since` steps after the last computed one.
// TaylorSeer: divided differences (x = d_prev[i], y = d_cur[i]) take (-1/w, 1/w); term i of the extrapolation
// takes (k^i / i!, 1). FoCa: the sum of its two slopes takes the Heun weight twice, since / 2 up to its
// horizon of 3 steps and 4.5 / since beyond (focaWeight in src/ref/foca.ts).
fn decision_slot_weights(code: u32, since: f32) -> vec2<f32> {
  let i = code & 0xffu;
  if (code == SLOT_FOCA_SLOPES) {
    let c = select(4.5 / since, since / 2.0, since <= 3.0);
    return vec2<f32>(c, c);
  }
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
