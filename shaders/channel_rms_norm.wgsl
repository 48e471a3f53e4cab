// algorithm: RMS normalisation across the channels of NCHW activations (diffusers' WanRMS_norm:
// F.normalize over dim 1, times sqrt(C) and a per-channel gamma, plus an optional bias), optionally followed
// by SiLU: at every (image, pixel), out[c] = x[c] / max(||x[:]||_2, eps) * sqrt(C) * gamma[c] + bias[c].
// One invocation per `Elem` of pixels (vec4<f32> of 4 adjacent pixels when H * W is a multiple of 4, f32
// otherwise; src/ops/channel_rms_norm.ts appends the alias): a first pass over the C channels sums the
// squares, a second normalises; both read with stride H * W, coalesced across neighbouring invocations.
// IN_PLACE: x is read through `out` (each invocation reads and writes its own pixels only) and binding 0
// holds a stand-in, as does `bias` without one.

override WG: u32 = 64;
override IN_PLACE: bool = false;

const FLAG_BIAS: u32 = 1u;
const FLAG_SILU: u32 = 2u;

struct Params {
  count: u32,    // N * spatial: Elems of one channel of every image
  spatial: u32,  // H * W in Elems
  channels: u32, // C
  flags: u32,
  scale: f32,    // sqrt(C)
  eps: f32,      // F.normalize's floor on the norm
}

@group(0) @binding(0) var<storage, read> x: array<Elem>;        // [N, C, H, W]; a stand-in when IN_PLACE
@group(0) @binding(1) var<storage, read> gamma: array<f32>;     // [C]
@group(0) @binding(2) var<storage, read> bias: array<f32>;      // [C]; a stand-in without FLAG_BIAS
@group(0) @binding(3) var<storage, read_write> out: array<Elem>; // [N, C, H, W]
@group(0) @binding(4) var<uniform> p: Params;

fn load(i: u32) -> Elem {
  if (IN_PLACE) {
    return out[i];
  }
  return x[i];
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let e = grid_element(wid, grid, lid, 0u, 1u, WG); // common.wgsl
  if (e >= p.count) {
    return;
  }
  let n = e / p.spatial;
  let base = n * p.channels * p.spatial + e % p.spatial;
  var squares = Elem(0.0);
  for (var c = 0u; c < p.channels; c++) {
    let v = load(base + c * p.spatial);
    squares += v * v;
  }
  let norm = max(sqrt(squares), Elem(p.eps));
  for (var c = 0u; c < p.channels; c++) {
    let i = base + c * p.spatial;
    var v = load(i) / norm * p.scale * gamma[c];
    if ((p.flags & FLAG_BIAS) != 0u) {
      v += bias[c];
    }
    if ((p.flags & FLAG_SILU) != 0u) {
      v = v / (1.0 + exp(-v));
    }
    out[i] = v;
  }
}
