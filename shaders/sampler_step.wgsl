// algorithm: the fused sampler update, in place on x [B, ...], one streaming pass:
//   x = a*x + b*vg + c*z
// with vg = v when v is [B, ...], or classifier-free guidance vg = v_u + g*(v_c - v_u) when v is [2B, ...]
// holding the conditional batch first and the unconditional second (so v_u of element e is v[count + e]).
// z is fresh standard-normal noise of x's shape, read only when c != 0 (a stand-in is bound otherwise).
// a, b, c, g are per-step values fixed in each Dispatch's uniform, so a request builds one Dispatch per step
// once. `Elem` is vec4<f32> when x's size is a multiple of 4 (then count is too, keeping v_u aligned), else
// f32; src/ops/sampler_step.ts appends the alias. Each invocation handles ITEMS Elems WG apart.

override WG: u32 = 256;
override ITEMS: u32 = 4u;

struct Params {
  count: u32,  // Elems of x (B samples)
  guided: u32, // 1: v is [2B, ...] (cond, uncond)
  a: f32,
  b: f32,
  c: f32,
  g: f32,      // guidance scale, used when guided
}

@group(0) @binding(0) var<storage, read_write> x: array<Elem>; // [B, ...] updated in place
@group(0) @binding(1) var<storage, read> v: array<Elem>;        // [B, ...] or [2B, ...] (cond, then uncond)
@group(0) @binding(2) var<storage, read> z: array<Elem>;        // [B, ...] noise; a stand-in when c == 0
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
      var velocity = v[e];
      if (p.guided != 0u) {
        let uncond = v[p.count + e];
        velocity = uncond + p.g * (velocity - uncond);
      }
      var next = p.a * x[e] + p.b * velocity;
      if (p.c != 0.0) {
        next += p.c * z[e];
      }
      x[e] = next;
    }
  }
}
