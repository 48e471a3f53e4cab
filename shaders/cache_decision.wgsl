// algorithm: DBCache's canCache for one step, decided on the GPU so that no step waits on a readback
// (cache-strategies.md, "What to go beyond with"). One invocation: reads the step's residual diff, applies
// the gates that follow the host's step-index gates (max cached steps, max continuous cached steps, max
// accumulated diff, threshold off, threshold), updates the per-request counters, logs the step, and writes
// the indirect dispatch arguments of every conditional dispatch: full size when its condition holds, zero
// workgroups otherwise. The host forces a step (mode 1 compute, 2 cached) for warmup, the first step and
// step masks; everything else still happens. With TaylorSeer the state also holds the last computed step and
// how many derivative entries exist, which pick the calibrator's dispatches and give their weights (1/w on
// update, k^i/i! on approximate), written per slot for the host to copy into their uniforms.
// CPU references: CacheDecision (src/cache/decision.ts) and TaylorSeerReference (src/ref/taylor_seer.ts).

struct Params {
  step: u32,
  mode: u32,            // 0: decide here; 1: the host forced compute; 2: the host forced cached
  host_gate: u32,       // gate code of a forced step
  slots: u32,           // conditional dispatches
  threshold: f32,
  max_cached: i32,      // < 0: no limit
  max_continuous: i32,  // < 0: no limit
  max_accumulated: f32, // < 0: gate off
  derivatives: u32,     // TaylorSeer order n (0 without a calibrator)
}

// Gate codes: indices into GATES of src/cache/decision.ts.
const GATE_MAX_CACHED: u32 = 4u;
const GATE_MAX_CONTINUOUS: u32 = 5u;
const GATE_MAX_ACCUMULATED: u32 = 6u;
const GATE_THRESHOLD_OFF: u32 = 8u;
const GATE_SIMILAR: u32 = 9u;
const GATE_NOT_SIMILAR: u32 = 10u;

@group(0) @binding(0) var<storage, read> diff: array<f32>;         // [1 + samples]: the whole-tensor diff first
@group(0) @binding(1) var<storage, read> plan: array<vec4<u32>>;   // [slots]: workgroups x, y, z; condition
@group(0) @binding(2) var<storage, read_write> state: array<f32>;  // [8 + 3 * steps]: cached steps, consecutive cached, accumulated diff, last computed step (-1: none), derivative entries, 3 unused; per step: cached, diff (-1: none), gate
@group(0) @binding(3) var<storage, read_write> args: array<u32>;   // [3 * slots]: indirect dispatch arguments
@group(0) @binding(4) var<storage, read_write> weights: array<f32>; // [2 * slots]: alpha, beta per slot (TaylorSeer's)
@group(0) @binding(5) var<uniform> p: Params;

fn decide() -> bool {
  var cached_steps = state[0];
  var consecutive = state[1];
  var accumulated = state[2];
  var measured = -1.0;
  var cached = p.mode == 2u;
  var gate = p.host_gate;
  if (p.mode == 0u) {
    if (p.max_cached >= 0 && cached_steps >= f32(p.max_cached)) {
      gate = GATE_MAX_CACHED;
    } else if (p.max_continuous >= 0 && consecutive >= f32(p.max_continuous)) {
      gate = GATE_MAX_CONTINUOUS;
    } else if (p.max_accumulated >= 0.0 && accumulated >= p.max_accumulated) {
      gate = GATE_MAX_ACCUMULATED;
    } else if (p.threshold <= 0.0) {
      gate = GATE_THRESHOLD_OFF;
    } else {
      measured = diff[0];
      accumulated += measured;
      cached = measured < p.threshold;
      gate = select(GATE_NOT_SIMILAR, GATE_SIMILAR, cached);
    }
  }
  if (cached) {
    cached_steps += 1.0;
    consecutive += 1.0;
  } else {
    consecutive = 0.0;
  }
  state[0] = cached_steps;
  state[1] = consecutive;
  state[2] = accumulated;
  let log = 8u + 3u * p.step;
  state[log] = select(0.0, 1.0, cached);
  state[log + 1u] = measured;
  state[log + 2u] = f32(gate);
  return cached;
}

@compute @workgroup_size(1)
fn main() {
  let cached = decide();
  let last = state[3];
  let entries = u32(state[4]);
  // w: steps since the last computed one (an update), k: the same for an approximation.
  let since = f32(p.step) - last;
  for (var j = 0u; j < p.slots; j++) {
    let slot = plan[j];
    let run = decision_slot_runs(slot.w, cached, entries, p.derivatives); // common.wgsl
    args[3u * j] = select(0u, slot.x, run);
    args[3u * j + 1u] = select(0u, slot.y, run);
    args[3u * j + 2u] = select(0u, slot.z, run);
    let w = decision_slot_weights(slot.w, since);
    weights[2u * j] = w.x;
    weights[2u * j + 1u] = w.y;
  }
  if (!cached) {
    state[3] = f32(p.step);
    state[4] = f32(1u + min(entries, p.derivatives));
  }
}
