// algorithm: DBPrune's decision for one prunable block, on the GPU (cache-strategies.md, DBPrune), so that
// no block waits on a readback. One invocation: at a step's first prunable block it closes the previous step
// (a step with a pruned block counts towards max_pruned_steps) and resets the step's running diff mean; then
// it judges the block's input diff against the threshold, relaxed to relax * (mean positive diff so far in
// this step) when the dynamic threshold is on and that stays below the cap (mode 1: the host forced the block
// to run); logs the block; and writes the indirect arguments of the block's dispatches: the block and its
// store, its residual replay, and TaylorSeer's update and extrapolation, whose weights it computes from the
// block's own history (the steps it stored on), for the host to copy into their uniforms.
// CPU references: PruneDecision (src/cache/prune_decision.ts), TaylorSeerReference (src/ref/taylor_seer.ts).

// struct Params is generated from its declaration in src/cache/kernels/prune_decision.ts.

@group(0) @binding(0) var<storage, read> diff: array<f32>;          // [1 + samples]: the block input's diff first
@group(0) @binding(1) var<storage, read> plan: array<vec4<u32>>;    // [slots]: workgroups x, y, z; condition
@group(0) @binding(2) var<storage, read_write> state: array<f32>;   // [4 + 2 * blocks + 2 * steps * blocks]: pruned steps, pruned this step, sum and count of positive diffs this step; per block: last stored step (-1: none), TaylorSeer entries; per (step, block): flag (1 pruned, 2 max_pruned_steps), diff (-1: none)
@group(0) @binding(3) var<storage, read_write> args: array<u32>;    // [3 * slots]: indirect dispatch arguments
@group(0) @binding(4) var<storage, read_write> weights: array<f32>; // [2 * slots]: alpha, beta per slot (TaylorSeer's)
@group(0) @binding(5) var<uniform> p: Params;

fn judge() -> bool {
  if (p.first == 1u) {
    if (state[1] > 0.0) {
      state[0] += 1.0;
    }
    state[1] = 0.0;
    state[2] = 0.0;
    state[3] = 0.0;
  }
  var pruned = false;
  var flag = 0.0;
  var measured = -1.0;
  if (p.mode == 1u) {
    // forced to run: nothing judged
  } else if (p.max_pruned >= 0 && state[0] >= f32(p.max_pruned)) {
    flag = 2.0;
  } else {
    measured = diff[0];
    var threshold = p.threshold;
    if (p.dynamic == 1u && state[3] > 0.0) {
      let relaxed = state[2] / state[3] * p.relax;
      if (relaxed < p.cap) {
        threshold = max(relaxed, p.threshold);
      }
    }
    pruned = threshold > 0.0 && measured < threshold;
    if (measured > 0.0) {
      state[2] += measured;
      state[3] += 1.0;
    }
    if (pruned) {
      state[1] += 1.0;
      flag = 1.0;
    }
  }
  let log = 4u + 2u * p.blocks + 2u * (p.step * p.blocks + p.column);
  state[log] = flag;
  state[log + 1u] = measured;
  return pruned;
}

@compute @workgroup_size(1)
fn main() {
  let pruned = judge();
  let history = 4u + 2u * p.column;
  let last = state[history];
  let entries = u32(state[history + 1u]);
  let since = f32(p.step) - last;
  for (var j = 0u; j < p.slots; j++) {
    let slot = plan[j];
    let run = decision_slot_runs(slot.w, pruned, entries, p.derivatives); // common.wgsl
    args[3u * j] = select(0u, slot.x, run);
    args[3u * j + 1u] = select(0u, slot.y, run);
    args[3u * j + 2u] = select(0u, slot.z, run);
    let w = decision_slot_weights(slot.w, since);
    weights[2u * j] = w.x;
    weights[2u * j + 1u] = w.y;
  }
  if (!pruned && p.refresh == 1u) {
    state[history] = f32(p.step);
    state[history + 1u] = f32(1u + min(entries, p.derivatives));
  }
}
