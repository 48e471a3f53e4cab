// algorithm: one scheduler step as a fused update, in place on x [B, C, ...], one streaming pass:
//   m  = the model output, guided m_u + g*(m_c - m_u) when it holds [2B, ...] (conditional batch first)
//   x0 = x0_sample*x + x0_model*m, clamped to [-clip, clip] when clip >= 0 (the data prediction)
//   s  = c_last*last + c_x0*x0 + sum_k c_hist[k]*h_k when correct (UniPC's corrector), else x
//   x  = n_sample*s + n_x0*x0 + sum_k n_hist[k]*h_k + n_model*m + n_noise*z
//   last = s when store_last; h[x0_at..] = x0 unless x0_at is NONE
// h_k is the x0 of k + 1 steps before, at h[hist_at[k] + e]: h is a ring of x0s, one slot per kept step,
// and this step's x0 overwrites the oldest slot after every history term has read it (same invocation).
// Every diffusers scheduler step used here (DDIM, DPM-Solver++ 2M, UniPC, Euler, flow-match Euler, and the
// embedded model's own samplers) is this with per-step coefficients computed on the host
// (src/pipeline/schedulers/). The model output may carry more channels per sample than x (DiT's learned
// sigma): only the first C are read, element e of sample b at m[b * m_stride + e % per_sample]. A term whose
// weight is 0 is never read (z, last and the ring start as whatever the pool held).
// `Elem` is vec4<f32> when every count and stride is a multiple of 4, else f32 (src/ops/sampler_step.ts).

override WG: u32 = 256;
override ITEMS: u32 = 4u;

const NONE: u32 = 0xffffffffu;

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
  n_model: f32,
  n_noise: f32,
  correct: u32,
  c_last: f32,
  c_x0: f32,
  hist_at: vec4<u32>, // Elem offset in h of the x0 of k + 1 steps before
  n_hist: vec4<f32>,
  c_hist: vec4<f32>,
  x0_at: u32,         // Elem offset in h where this step's x0 goes, or NONE
  store_last: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<Elem>;    // [B, C, ...] updated in place
@group(0) @binding(1) var<storage, read> m: array<Elem>;          // [B or 2B, C_m >= C, ...]
@group(0) @binding(2) var<storage, read> z: array<Elem>;          // [B, C, ...] noise; a stand-in when unused
@group(0) @binding(3) var<storage, read_write> last: array<Elem>; // [B, C, ...] the previous step's s
@group(0) @binding(4) var<storage, read_write> h: array<Elem>;    // [slots, B, C, ...] ring of x0s
@group(0) @binding(5) var<uniform> p: Params;

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
      var x0 = p.x0_sample * x[e] + p.x0_model * model;
      if (p.clip >= 0.0) {
        x0 = clamp(x0, Elem(-p.clip), Elem(p.clip));
      }
      var next = p.n_x0 * x0 + p.n_model * model;
      var corrected = p.c_x0 * x0;
      for (var k = 0u; k < 4u; k++) {
        if (p.n_hist[k] != 0.0 || p.c_hist[k] != 0.0) {
          let older = h[p.hist_at[k] + e];
          next += p.n_hist[k] * older;
          corrected += p.c_hist[k] * older;
        }
      }
      var sample = x[e];
      if (p.correct != 0u) {
        sample = corrected + p.c_last * last[e];
      }
      next += p.n_sample * sample;
      if (p.n_noise != 0.0) {
        next += p.n_noise * z[e];
      }
      x[e] = next;
      if (p.store_last != 0u) {
        last[e] = sample;
      }
      if (p.x0_at != NONE) {
        h[p.x0_at + e] = x0;
      }
    }
  }
}
