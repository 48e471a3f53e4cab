// algorithm: GroupNorm over NCHW (PyTorch semantics: per sample and group, mean and biased variance over the
// group's channels and pixels, which are contiguous in NCHW), then the per-channel affine and an optional
// SiLU (the norm -> act pairs of ResnetBlock2D and the decoder's output). Three stages:
//   `partials`: workgroup (chunk, group, sample) runs Welford over its slice and merges its lanes' (count,
//               mean, M2) with Chan's formula, so large groups never sum squares of big numbers;
//   `finish`:   one workgroup per (sample, group) merges the chunks into (mean, 1 / sqrt(var + eps));
//   `apply`:    elementwise, in place or into out.

override WG: u32 = 256;
override IN_PLACE: bool = false; // x is read from `out` (binding 0 holds a stand-in)
const ITEMS: u32 = 8u; // elements per lane per chunk

struct Params {
  per_group: u32,   // (C / G) * H * W
  spatial: u32,     // H * W
  channels: u32,
  groups: u32,
  chunks: u32,      // workgroups per (sample, group) in `partials`
  total: u32,       // B * C * H * W
  eps: f32,
  flags: u32,       // 1: affine, 2: SiLU after
  stats_offset: u32, // B * G * chunks: where the per-group (mean, rstd) start in `partial`
}

@group(0) @binding(0) var<storage, read> x: array<f32>;               // [B, C, H, W]
@group(0) @binding(1) var<storage, read> weight: array<f32>;          // [C]; a stand-in without affine
@group(0) @binding(2) var<storage, read> bias: array<f32>;            // [C]
@group(0) @binding(3) var<storage, read_write> partial: array<vec4<f32>>; // [B*G*chunks]: count, mean, M2; then [B*G]: mean, rstd
@group(0) @binding(4) var<storage, read_write> out: array<f32>;       // [B, C, H, W]
@group(0) @binding(5) var<uniform> p: Params;

fn load(i: u32) -> f32 {
  if (IN_PLACE) {
    return out[i];
  }
  return x[i];
}

var<workgroup> tree: array<vec4<f32>, WG>;

fn merge(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
  let n = a.x + b.x;
  if (n == 0.0) {
    return a;
  }
  let delta = b.y - a.y;
  return vec4<f32>(n, a.y + delta * b.x / n, a.z + b.z + delta * delta * a.x * b.x / n, 0.0);
}

fn reduce_tree(lid: u32, value: vec4<f32>) -> vec4<f32> {
  tree[lid] = value;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half = half / 2u) {
    if (lid < half) {
      tree[lid] = merge(tree[lid], tree[lid + half]);
    }
    workgroupBarrier();
  }
  return tree[0];
}

@compute @workgroup_size(WG)
fn partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let group = wid.z * p.groups + wid.y;
  let base = group * p.per_group;
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < ITEMS; k++) {
    let m = (wid.x * ITEMS + k) * WG + lid.x;
    if (m < p.per_group) {
      let v = load(base + m);
      acc = merge(acc, vec4<f32>(1.0, v, 0.0, 0.0));
    }
  }
  let total = reduce_tree(lid.x, acc);
  if (lid.x == 0u) {
    partial[group * p.chunks + wid.x] = total;
  }
}

@compute @workgroup_size(WG)
fn finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let group = wid.x;
  var acc = vec4<f32>(0.0);
  for (var g = lid.x; g < p.chunks; g += WG) {
    acc = merge(acc, partial[group * p.chunks + g]);
  }
  let total = reduce_tree(lid.x, acc);
  if (lid.x == 0u) {
    partial[p.stats_offset + group] = vec4<f32>(total.y, inverseSqrt(total.z / total.x + p.eps), 0.0, 0.0);
  }
}

@compute @workgroup_size(WG)
fn apply(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  for (var item = 0u; item < ITEMS; item++) {
    let i = grid_element(wid, grid, lid, item, ITEMS, WG); // common.wgsl
    if (i < p.total) {
      let s = partial[p.stats_offset + i / p.per_group];
      var v = (load(i) - s.x) * s.y;
      if ((p.flags & 1u) != 0u) {
        let c = (i / p.spatial) % p.channels;
        v = v * weight[c] + bias[c];
      }
      if ((p.flags & 2u) != 0u) {
        v = silu(v);
      }
      out[i] = v;
    }
  }
}
