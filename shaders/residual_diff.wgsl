// algorithm: relative L1 difference diff = sum|a-b| / sum|a| (= mean|a-b| / mean|a|), two-stage reduction.
// Stage `partials`: workgroup (chunk g, sample s) sums |a-b| and |a| over its slice of sample s.
// Stage `finish`: one workgroup adds each sample's partials and writes the ratios, so a cache decision
// reads 4 bytes (or 4*(1+samples)) and nothing else leaves the GPU. It also writes the two means apart
// (mean|a-b|, mean|a| over the visited elements), which rules that combine changes of several tensors read.
// Downsampling (`stride` > 1) visits channel 0, stride, 2*stride ... of every row of `channels` values.

override WG: u32 = 256;
const ITEMS: u32 = 16u; // elements per invocation per chunk: amortises the reduction tree

struct Params {
  per_sample: u32, // elements of one sample in a and b
  channels: u32,   // row length for downsampling
  stride: u32,     // downsample factor (1 = every channel)
  chunks: u32,     // workgroups per sample in stage 1
  samples: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;                   // [samples * per_sample] reference
@group(0) @binding(1) var<storage, read> b: array<f32>;                   // [samples * per_sample] current
@group(0) @binding(2) var<storage, read_write> partial: array<vec2<f32>>; // [samples * chunks] (sum|a-b|, sum|a|)
@group(0) @binding(3) var<storage, read_write> result: array<f32>;        // [1 + samples]: overall, per sample
@group(0) @binding(4) var<storage, read_write> means: array<vec2<f32>>;  // [1 + samples]: (mean|a-b|, mean|a|)
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> tree: array<vec2<f32>, WG>;

fn reduce_tree(lid: u32, value: vec2<f32>) -> vec2<f32> {
  tree[lid] = value;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half = half / 2u) {
    if (lid < half) {
      tree[lid] = tree[lid] + tree[lid + half];
    }
    workgroupBarrier();
  }
  let total = tree[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let kept_per_row = (p.channels + p.stride - 1u) / p.stride;
  let visited = (p.per_sample / p.channels) * kept_per_row;
  let base = wid.y * p.per_sample;
  var acc = vec2<f32>(0.0, 0.0);
  let start = wid.x * WG * ITEMS + lid.x;
  for (var k = 0u; k < ITEMS; k++) {
    let m = start + k * WG;
    if (m < visited) {
      let i = base + (m / kept_per_row) * p.channels + (m % kept_per_row) * p.stride;
      acc += vec2<f32>(abs(a[i] - b[i]), abs(a[i]));
    }
  }
  let total = reduce_tree(lid.x, acc);
  if (lid.x == 0u) {
    partial[wid.y * p.chunks + wid.x] = total;
  }
}

fn ratio(sums: vec2<f32>) -> f32 {
  // An all-zero reference has no scale: equal tensors are "no change", anything else is "all change".
  if (sums.y == 0.0) {
    return select(1e30, 0.0, sums.x == 0.0);
  }
  return sums.x / sums.y;
}

@compute @workgroup_size(WG)
fn finish(@builtin(local_invocation_id) lid: vec3<u32>) {
  let kept_per_row = (p.channels + p.stride - 1u) / p.stride;
  let visited = f32((p.per_sample / p.channels) * kept_per_row);
  var overall = vec2<f32>(0.0, 0.0);
  for (var s = 0u; s < p.samples; s++) {
    var acc = vec2<f32>(0.0, 0.0);
    for (var g = lid.x; g < p.chunks; g += WG) {
      acc += partial[s * p.chunks + g];
    }
    let total = reduce_tree(lid.x, acc);
    overall += total;
    if (lid.x == 0u) {
      result[1u + s] = ratio(total);
      means[1u + s] = total / visited;
    }
  }
  if (lid.x == 0u) {
    result[0] = ratio(overall);
    means[0] = overall / (visited * f32(p.samples));
  }
}
