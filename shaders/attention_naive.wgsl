// algorithm: textbook three-kernel attention, the baseline of the flash attention bench.
//   scores:       S[b, h, i, j] = scale * q_i . k_j          one invocation per score, materialised [N, N]
//   softmax_rows: S[b, h, i, :] = softmax(S[b, h, i, :])     one invocation per row: max, sum of exp, divide
//   weighted_sum: out[b, i, h, d] = sum_j S[b, h, i, j] v_j,d one invocation per output element
// All loads are scalar and every kernel streams [N, N] through memory: O(N^2) traffic and storage.
// Views as in flash_attention.wgsl, in elements: (b, n, h, d) at offset + (b*N + n)*stride + h*head_dim + d.

override WG_X: u32 = 16;
override WG_Y: u32 = 16;

struct Params {
  tokens: u32, // N
  heads: u32,
  head_dim: u32,
  q_offset: u32,
  q_stride: u32,
  k_offset: u32,
  k_stride: u32,
  v_offset: u32,
  v_stride: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;            // view [batch, N, heads, head_dim]
@group(0) @binding(1) var<storage, read> k: array<f32>;            // view [batch, N, heads, head_dim]
@group(0) @binding(2) var<storage, read> v: array<f32>;            // view [batch, N, heads, head_dim]
@group(0) @binding(3) var<storage, read_write> s: array<f32>;      // [batch, heads, N, N]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;    // [batch, N, heads * head_dim]
@group(0) @binding(5) var<uniform> p: Params;

fn view_at(offset: u32, stride: u32, b: u32, n: u32, h: u32) -> u32 {
  return offset + (b * p.tokens + n) * stride + h * p.head_dim;
}

// gid.z = b * heads + h throughout.
fn score_row(bh: u32, i: u32) -> u32 {
  return (bh * p.tokens + i) * p.tokens;
}

@compute @workgroup_size(WG_X, WG_Y)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let i = gid.y;
  if (i >= p.tokens || j >= p.tokens) {
    return;
  }
  let b = gid.z / p.heads;
  let h = gid.z % p.heads;
  let qi = view_at(p.q_offset, p.q_stride, b, i, h);
  let kj = view_at(p.k_offset, p.k_stride, b, j, h);
  var acc = 0.0;
  for (var d = 0u; d < p.head_dim; d++) {
    acc += q[qi + d] * k[kj + d];
  }
  s[score_row(gid.z, i) + j] = acc * p.scale;
}

@compute @workgroup_size(WG_X * WG_Y)
fn softmax_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.tokens) {
    return;
  }
  let row = score_row(gid.z, i);
  var top = s[row];
  for (var j = 1u; j < p.tokens; j++) {
    top = max(top, s[row + j]);
  }
  var sum = 0.0;
  for (var j = 0u; j < p.tokens; j++) {
    let e = exp(s[row + j] - top);
    s[row + j] = e;
    sum += e;
  }
  for (var j = 0u; j < p.tokens; j++) {
    s[row + j] /= sum;
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn weighted_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
  let d = gid.x;
  let i = gid.y;
  if (i >= p.tokens || d >= p.head_dim) {
    return;
  }
  let b = gid.z / p.heads;
  let h = gid.z % p.heads;
  let row = score_row(gid.z, i);
  let vd = view_at(p.v_offset, p.v_stride, b, 0u, h) + d;
  var acc = 0.0;
  for (var j = 0u; j < p.tokens; j++) {
    acc += s[row + j] * v[vd + j * p.v_stride];
  }
  out[((b * p.tokens + i) * p.heads + h) * p.head_dim + d] = acc;
}
