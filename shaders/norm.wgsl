// algorithm: row normalisation (LayerNorm, RMSNorm, LayerNorm fused with adaLN modulate) over rows of
// `channels` values. LANES invocations share a row (a workgroup holds WG / LANES rows): they stride over it
// with coalesced loads and add their partial sums in a workgroup tree (subgroup-free: llvmpipe has none).
// LayerNorm variance is two-pass: the mean first, then mean((x - mean)^2) over the row re-read from memory
// (a row is <= 16 KiB at C = 4096, so the re-read hits cache). The one-pass E[x^2] - E[x]^2 cancels
// catastrophically in fp32 when |mean| >> std (mean 1e3, std 1: x^2 ~ 1e6 has an fp32 ulp of 0.06 and the
// variance 1 drowns), and Welford needs a division per element and a three-value combine in the tree for
// the same accuracy as two-pass here.
// RMSNorm is CENTER = false: the mean is taken as 0, leaving one reduction, x * rsqrt(mean(x^2) + eps).
// A row is head h of token t, at offset + t * row_stride + h * channels: plain [rows, C] tensors have one
// head per token, while q/k inside a fused qkv tensor are normalised IN_PLACE, read and written through
// `out`, the one read_write binding. Modulate: out = norm * (1 + scale[s]) + shift[s], shift and scale
// being chunks of mod [B, k*C] for the sample s = t / tokens_per_sample.
// Bindings an instance does not read (weight, bias, modulation; x when in place) hold a stand-in buffer.

override WG: u32 = 256;
override LANES: u32 = 256; // invocations per row: a power of two dividing WG
override CENTER: bool = true; // LayerNorm; false: RMSNorm
override HAS_WEIGHT: bool = false;
override HAS_BIAS: bool = false;
override MODULATE: bool = false;
override IN_PLACE: bool = false;

struct Params {
  rows: u32,              // rows to normalise: tokens * heads
  channels: u32,          // C, the normalised length
  heads: u32,             // rows per token (1 for a plain [rows, C] tensor)
  offset: u32,            // element of (token 0, head 0, channel 0) in the source
  row_stride: u32,        // elements from one token to the next in the source
  eps: f32,
  tokens_per_sample: u32, // T of x [B, T, C]
  mod_stride: u32,        // k * C: one sample's row of mod
  shift_offset: u32,      // shift chunk * C
  scale_offset: u32,      // scale chunk * C
}

@group(0) @binding(0) var<storage, read> x: array<f32>;          // source view [tokens, heads, C]
@group(0) @binding(1) var<storage, read> weight: array<f32>;     // [C]
@group(0) @binding(2) var<storage, read> bias: array<f32>;       // [C]
@group(0) @binding(3) var<storage, read> modulation: array<f32>; // [B, k*C]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // [rows, C]; IN_PLACE: the source view
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> partials: array<f32, WG>;

// Sum of `value` over the LANES invocations of this invocation's row; each of them gets the total.
fn row_sum(lid: u32, value: f32) -> f32 {
  partials[lid] = value;
  workgroupBarrier();
  let lane = lid % LANES;
  for (var half = LANES / 2u; half > 0u; half = half / 2u) {
    if (lane < half) {
      partials[lid] += partials[lid + half];
    }
    workgroupBarrier();
  }
  let total = partials[lid - lane];
  workgroupBarrier(); // the next reduction overwrites partials
  return total;
}

fn source(i: u32) -> f32 {
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
  let lane = lid % LANES;
  let row = grid_element(wid, grid, lid / LANES, 0u, 1u, WG / LANES); // common.wgsl: WG / LANES rows each
  // Invocations past the last row visit no channel but still reach every barrier.
  let length = select(0u, p.channels, row < p.rows);
  let token = row / p.heads;
  let src = p.offset + token * p.row_stride + (row - token * p.heads) * p.channels;
  let n = f32(p.channels);

  var mean = 0.0;
  if (CENTER) {
    var sum = 0.0;
    for (var c = lane; c < length; c += LANES) {
      sum += source(src + c);
    }
    mean = row_sum(lid, sum) / n;
  }
  var squares = 0.0;
  for (var c = lane; c < length; c += LANES) {
    let d = source(src + c) - mean;
    squares += d * d;
  }
  let rstd = inverseSqrt(row_sum(lid, squares) / n + p.eps);

  // In place every element is read, then written, by the same invocation: rows never overlap.
  let dst = select(row * p.channels, src, IN_PLACE);
  let sample = (token / p.tokens_per_sample) * p.mod_stride;
  for (var c = lane; c < length; c += LANES) {
    var y = (source(src + c) - mean) * rstd;
    if (HAS_WEIGHT) {
      y *= weight[c];
    }
    if (HAS_BIAS) {
      y += bias[c];
    }
    if (MODULATE) {
      y = y * (1.0 + modulation[sample + p.scale_offset + c]) + modulation[sample + p.shift_offset + c];
    }
    out[dst + c] = y;
  }
}
