// algorithm: one scheduler step as a fused update, in place on x [B, C, ...], one streaming pass:
//   m  = the model output, guided m_u + g*(m_c - m_u) when it holds [2B, ...] (conditional batch first)
//   x0 = x0_sample*x + x0_model*m, clamped to [-clip, clip] when clip >= 0 (the data prediction)
//   x  = n_sample*x + n_x0*x0 + n_prev*prev + n_model*m + n_noise*z
//   prev = x0 (kept for the next step's multistep term) when STORE_X0
// Every diffusers scheduler step used here (DDIM, DPM-Solver++ 2M, Euler, flow-match Euler, and the embedded
// model's own samplers) is this with per-step coefficients computed on the host (src/pipeline/schedulers/).
// The model output may carry more channels per sample than x (DiT's learned sigma): only the first C are
// read, element e of sample b at m[b * m_stride + e % per_sample]. z is read only when n_noise != 0.
// `Elem` is vec4<f32> when every count and stride is a multiple of 4, else f32 (src/ops/sampler_step.ts).

override WG: u32 = 256;
override ITEMS: u32 = 4u;
override STORE_X0: bool = false;

struct Params {
  count: u32,      // Elems of x
  per_sample: u32, // Elems of one sample of x
  m_stride: u32,   // Elems of one sample of m
  m_half: u32,     // Elems of the conditional half of m (B * m_stride)
  guided: u32,
  g: f32,
  x0_sample: f32,
  x0_model: f32,
  clip: f32,       // < 0: no clamp
  n_sample: f32,
  n_x0: f32,
  n_prev: f32,
  n_model: f32,
  n_noise: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<Elem>;    // [B, C, ...] updated in place
@group(0) @binding(1) var<storage, read> m: array<Elem>;          // [B or 2B, C_m >= C, ...]
@group(0) @binding(2) var<storage, read> z: array<Elem>;          // [B, C, ...] noise; a stand-in when unused
@group(0) @binding(3) var<storage, read_write> prev: array<Elem>; // [B, C, ...] the previous x0
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
      let at = (e / p.per_sample) * p.m_stride + e % p.per_sample;
      var model = m[at];
      if (p.guided != 0u) {
        let uncond = m[p.m_half + at];
        model = uncond + p.g * (model - uncond);
      }
      let sample = x[e];
      var x0 = p.x0_sample * sample + p.x0_model * model;
      if (p.clip >= 0.0) {
        x0 = clamp(x0, Elem(-p.clip), Elem(p.clip));
      }
      var next = p.n_sample * sample + p.n_x0 * x0 + p.n_model * model;
      if (p.n_prev != 0.0) {
        next += p.n_prev * prev[e];
      }
      if (p.n_noise != 0.0) {
        next += p.n_noise * z[e];
      }
      x[e] = next;
      if (STORE_X0) {
        prev[e] = x0;
      }
    }
  }
}
