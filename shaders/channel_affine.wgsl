// algorithm: a per-channel affine map of x [B, C, ...], out = x / divisor[c] + shift[c], one streaming pass:
// WanPipeline's de-normalisation of its latents before the VAE, latents / (1 / latents_std) + latents_mean,
// which divides (by the f32 reciprocal) rather than multiplies, so the engine does too. `Elem` is vec4<f32>
// when a channel's plane (the product of the dimensions after C) is a multiple of 4, f32 otherwise
// (src/ops/channel_affine.ts appends the alias); all lanes of a vec4 then share one channel. Each invocation
// handles ITEMS elements WG apart, as in axpy.wgsl.

override WG: u32 = 256;
override ITEMS: u32 = 4u;

struct Params {
  count: u32,    // Elems of x
  plane: u32,    // Elems per channel plane
  channels: u32, // C
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<Elem>;         // [B, C, ...]
@group(0) @binding(1) var<storage, read> divisor: array<f32>;    // [C]
@group(0) @binding(2) var<storage, read> shift: array<f32>;      // [C]
@group(0) @binding(3) var<storage, read_write> out: array<Elem>; // x's shape
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  for (var item = 0u; item < ITEMS; item++) {
    let e = grid_element(wid, grid, lid, item, ITEMS, WG); // common.wgsl
    if (e < p.count) {
      let c = (e / p.plane) % p.channels;
      out[e] = x[e] / divisor[c] + shift[c];
    }
  }
}
