// algorithm: sinusoidal timestep embedding (diffusers get_timestep_embedding):
//   out[b] = cat[sin(t_b * f), cos(t_b * f)], or cat[cos, sin] when cos_first (flip_sin_to_cos),
//   f_i = scale * exp(-ln(max_period) * i / (half - downscale_freq_shift)), plus a zero column for odd dim.
// f is a [half] table made once on the CPU in float64 (src/ops/timestep_embedding.ts), so the f32 roundings
// are f_i and the product t*f only. Arguments reach ~1e3 rad (t in [0, 1] times 1000): they are reduced to
// [-pi, pi] here with 2*pi split in two parts (Cody-Waite), because WGSL bounds the error of sin/cos inside
// [-pi, pi] only and GPU fast paths lose digits outside it.

override WG: u32 = 64;

const INV_TWO_PI: f32 = 0.15915494309189535;
const TWO_PI_HI: f32 = 6.28125; // 8 significant bits: k * TWO_PI_HI is exact for |k| < 2^16 (|x| < ~4e5)
const TWO_PI_LO: f32 = 0.0019353071795864769; // 2*pi - TWO_PI_HI

struct Params {
  dim: u32,
  half_dim: u32,  // dim / 2, rounded down
  cos_first: u32, // 1 = flip_sin_to_cos
}

@group(0) @binding(0) var<storage, read> t: array<f32>;              // [batch]
@group(0) @binding(1) var<storage, read> freqs: array<f32>;          // [half_dim] scale * frequency
@group(0) @binding(2) var<storage, read_write> out: array<f32>;      // [batch, dim]
@group(0) @binding(3) var<uniform> p: Params;

fn reduce_angle(x: f32) -> f32 {
  let k = round(x * INV_TWO_PI);
  return (x - k * TWO_PI_HI) - k * TWO_PI_LO;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.dim) {
    return;
  }
  let b = gid.y;
  var value = 0.0; // the padding column of an odd dim
  if (c < 2u * p.half_dim) {
    let second_half = c >= p.half_dim;
    let arg = reduce_angle(t[b] * freqs[select(c, c - p.half_dim, second_half)]);
    value = select(sin(arg), cos(arg), second_half != (p.cos_first == 1u));
  }
  out[b * p.dim + c] = value;
}
