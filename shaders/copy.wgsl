// algorithm: dst[dst_offset + e] = src[src_offset + e] for e < count, one streaming pass: a buffer copy as a
// dispatch, which (unlike copyBufferToBuffer) can be made indirect, so that a GPU-side cache decision can skip
// the copies inside a span of blocks. Offsets and count are in `Elem`s: vec4<f32> when all three are multiples
// of 4 floats, f32 otherwise (src/ops/copy.ts appends the alias). Each invocation moves ITEMS elements WG
// apart, as in axpy.wgsl.

override WG: u32 = 256;
override ITEMS: u32 = 4u;

struct Params {
  count: u32,      // Elems copied
  src_offset: u32, // Elems into src
  dst_offset: u32, // Elems into dst
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> src: array<Elem>;       // [>= src_offset + count]
@group(0) @binding(1) var<storage, read_write> dst: array<Elem>; // [>= dst_offset + count]
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  for (var item = 0u; item < ITEMS; item++) {
    let e = grid_element(wid, grid, lid, item, ITEMS, WG); // common.wgsl
    if (e < p.count) {
      dst[p.dst_offset + e] = src[p.src_offset + e];
    }
  }
}
