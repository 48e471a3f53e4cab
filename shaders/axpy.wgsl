// algorithm: out = beta * y + alpha * x + constant, one streaming pass over equal-size x and y (BLAS axpby, out of
// place or into y). Cache strategies run it every step: residual = output - input (alpha -1), hidden += residual
// (alpha 1). `Elem` is vec4<f32> when the size is a multiple of 4 (a quarter of the loads and stores, each
// one bounds-checked per SIMD lane on llvmpipe) and f32 otherwise; src/ops/axpy.ts appends the alias.
// Each invocation handles ITEMS elements WG apart, so a workgroup streams ITEMS*WG consecutive ones.
// IN_PLACE: y is read from and written to `out` while binding 1 holds a stand-in (x; never read).

override WG: u32 = 256;
override ITEMS: u32 = 4u;
override IN_PLACE: bool = false;

struct Params {
  count: u32, // Elems of x, y and out
  alpha: f32,
  beta: f32,
  constant: f32, // 0 but for affine maps of one tensor (FLUX's latent shift)
}

@group(0) @binding(0) var<storage, read> x: array<Elem>;         // [count]
@group(0) @binding(1) var<storage, read> y: array<Elem>;         // [count]; a stand-in when IN_PLACE
@group(0) @binding(2) var<storage, read_write> out: array<Elem>; // [count]: out, or y itself when IN_PLACE
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  for (var item = 0u; item < ITEMS; item++) {
    let e = grid_element(wid, grid, lid, item, ITEMS, WG); // common.wgsl
    if (e < p.count) {
      var base: Elem;
      if (IN_PLACE) {
        base = out[e];
      } else {
        base = y[e];
      }
      out[e] = p.beta * base + p.alpha * x[e] + p.constant;
    }
  }
}
