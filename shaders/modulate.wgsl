// algorithm: the elementwise half of adaLN-Zero, one streaming pass per op over x [B, T, C]:
//   modulate:         out = x * (1 + scale[s]) + shift[s]
//   gated_residual:   x = x + gate[s] * y     (x is the one read_write binding, `dst`)
//   silu_elementwise: out = x * sigmoid(x)    (on the conditioning vector, before the adaLN linear)
// shift, scale and gate are chunks of mod [B, k*C] (DiT's adaLN output): chunk i of sample s is
// mod[s*k*C + i*C .. + C], and element e of x belongs to sample s = e / (T*C), channel c = e % C.
// Each invocation handles ITEMS elements WG apart, so a workgroup reads ITEMS*WG consecutive values with
// coalesced loads. IN_PLACE (modulate, silu_elementwise): x is read from and written to `dst` while `src`
// holds a stand-in buffer, as does `modulation` for silu_elementwise.

override WG: u32 = 256;
override IN_PLACE: bool = false;
override ITEMS: u32 = 4u; // elements per invocation

struct Params {
  count: u32,           // elements of x
  channels: u32,        // C
  sample_elements: u32, // T * C
  mod_stride: u32,      // k * C: one sample's row of mod
  first_offset: u32,    // chunk * C of shift (modulate) or gate (gated_residual)
  second_offset: u32,   // chunk * C of scale (modulate)
}

@group(0) @binding(0) var<storage, read> src: array<f32>;        // [count]: x, or y of gated_residual
@group(0) @binding(1) var<storage, read> modulation: array<f32>; // [B, k*C]
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // [count]: out, or x when updated in place
@group(0) @binding(3) var<uniform> p: Params;

fn load(i: u32) -> f32 {
  if (IN_PLACE) {
    return dst[i];
  }
  return src[i];
}

// Index into mod of channel c of chunk 0 for element e; chunk i is i*C further.
fn chunk_base(e: u32) -> u32 {
  return (e / p.sample_elements) * p.mod_stride + e % p.channels;
}

@compute @workgroup_size(WG)
fn modulate(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  for (var item = 0u; item < ITEMS; item++) {
    let e = grid_element(wid, grid, lid, item, ITEMS, WG); // common.wgsl
    if (e < p.count) {
      let base = chunk_base(e);
      dst[e] = load(e) * (1.0 + modulation[base + p.second_offset]) + modulation[base + p.first_offset];
    }
  }
}

@compute @workgroup_size(WG)
fn gated_residual(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  for (var item = 0u; item < ITEMS; item++) {
    let e = grid_element(wid, grid, lid, item, ITEMS, WG); // common.wgsl
    if (e < p.count) {
      dst[e] += modulation[chunk_base(e) + p.first_offset] * src[e];
    }
  }
}

@compute @workgroup_size(WG)
fn silu_elementwise(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  for (var item = 0u; item < ITEMS; item++) {
    let e = grid_element(wid, grid, lid, item, ITEMS, WG); // common.wgsl
    if (e < p.count) {
      dst[e] = silu(load(e)); // common.wgsl
    }
  }
}
