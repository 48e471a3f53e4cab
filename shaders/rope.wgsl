// algorithm: rotary position embedding with FLUX-style N-D axes, in place on q or k rows.
// The head dim is split into one consecutive segment per position axis; inside a segment of width d the
// pair (x[2i], x[2i+1]) turns by angle pos_axis * theta^(-2i/d):
//   (x0, x1) -> (x0*cos - x1*sin, x0*sin + x1*cos)   (diffusers apply_rotary_emb, use_real_unbind_dim=-1).
// The (cos, sin) of every (token, pair) comes precomputed (src/ops/rope.ts ropeTable, built once per request
// shape), so this is a streaming pass: one invocation per (token, pair) loads its (cos, sin) once and walks
// the heads, whose copies of that pair sit half_dim pairs apart in the row. Memory-bound: q/k read + write.

override WG: u32 = 64;

struct Params {
  tokens: u32,
  half_dim: u32,   // head_dim / 2: pairs per head
  heads: u32,
  offset: u32,     // first pair of the view (its element offset / 2)
  row_stride: u32, // pairs from one token row to the next (element rowStride / 2)
}

@group(0) @binding(0) var<storage, read> cos_sin: array<vec2<f32>>; // [tokens, half_dim] (cos, sin)
// view of [batch, tokens, heads, half_dim] pairs: (b, n, h, j) at offset + (b*tokens + n)*row_stride + h*half_dim + j
@group(0) @binding(1) var<storage, read_write> x: array<vec2<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

// The (token, pair) grid is flat over workgroups x and y (src/ops/grid.ts: a video's tokens * half_dim pairs
// pass one dimension's limit); the batch entry is workgroup z.
@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let pair = grid_element(wid, grid, lid, 0u, 1u, WG); // n * half_dim + j (common.wgsl)
  if (pair >= p.tokens * p.half_dim) {
    return;
  }
  let n = pair / p.half_dim;
  let cs = cos_sin[pair];
  var at = p.offset + (wid.z * p.tokens + n) * p.row_stride + (pair - n * p.half_dim);
  for (var h = 0u; h < p.heads; h++) {
    let v = x[at];
    x[at] = vec2<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);
    at += p.half_dim;
  }
}
