// algorithm: DBPrune's decision for one prunable block, on the GPU (cache-strategies.md, DBPrune), so that
// no block waits on a readback. One invocation: at a step's first prunable block it closes the previous step
// (a step with a pruned block counts towards max_pruned_steps) and resets the step's running diff mean; then
// it judges the block's input diff against the threshold, relaxed to relax * (mean positive diff so far in
// this step) when the dynamic threshold is on and that stays below the cap; logs the block; and writes the
// indirect arguments of the block (compute path) and of its residual replay (cached path).
// CPU reference: PruneDecision in src/cache/prune_decision.ts.

struct Params {
  step: u32,
  column: u32,       // the block's index in the log row
  blocks: u32,       // log row length
  first: u32,        // 1 at the step's first prunable block
  slots: u32,        // conditional dispatches of this block
  dynamic: u32,      // 1: dynamic threshold on
  max_pruned: i32,   // < 0: no limit
  threshold: f32,
  relax: f32,
  cap: f32,
}

@group(0) @binding(0) var<storage, read> diff: array<f32>;         // [1 + samples]: the block input's diff first
@group(0) @binding(1) var<storage, read> plan: array<vec4<u32>>;   // [slots]: workgroups x, y, z; branch (0 compute, 1 cached)
@group(0) @binding(2) var<storage, read_write> state: array<f32>;  // [4 + 2 * steps * blocks]: pruned steps, pruned this step, sum and count of positive diffs this step; per (step, block): flag (1 pruned, 2 max_pruned_steps), diff (-1: none)
@group(0) @binding(3) var<storage, read_write> args: array<u32>;   // [3 * slots]: indirect dispatch arguments
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(1)
fn main() {
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
  if (p.max_pruned >= 0 && state[0] >= f32(p.max_pruned)) {
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
  let log = 4u + 2u * (p.step * p.blocks + p.column);
  state[log] = flag;
  state[log + 1u] = measured;
  for (var j = 0u; j < p.slots; j++) {
    let slot = plan[j];
    let run = (slot.w == 1u) == pruned;
    args[3u * j] = select(0u, slot.x, run);
    args[3u * j + 1u] = select(0u, slot.y, run);
    args[3u * j + 2u] = select(0u, slot.z, run);
  }
}
