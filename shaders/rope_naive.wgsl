// algorithm: naive rotary embedding, the bench's baseline for shaders/rope.wgsl. Every (batch, token, head,
// pair) invocation finds its axis, recomputes omega = pow(theta, -2i/d_axis) and cos/sin(pos * omega) in f32
// (a direct port of get_1d_rotary_pos_embed + apply_rotary_emb done on the fly) instead of reading a table.

override WG: u32 = 64;

struct Params {
  axis_dim: vec4<u32>, // widths of up to 4 position axes, unused ones 0
  tokens: u32,
  half_dim: u32,
  heads: u32,
  offset: u32,     // in pairs, as in rope.wgsl
  row_stride: u32, // in pairs
  axis_count: u32,
  theta: f32,
}

@group(0) @binding(0) var<storage, read> ids: array<f32>;          // [tokens, axis_count] positions
@group(0) @binding(1) var<storage, read_write> x: array<vec2<f32>>; // pairs laid out as in rope.wgsl
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row_pair = gid.x; // h * half_dim + j
  if (row_pair >= p.heads * p.half_dim) {
    return;
  }
  let n = gid.y;
  let j = row_pair % p.half_dim;
  var axis = 0u;
  var first_pair = 0u; // first pair of the axis segment that holds pair j
  for (; axis + 1u < p.axis_count; axis++) {
    if (j < first_pair + p.axis_dim[axis] / 2u) {
      break;
    }
    first_pair += p.axis_dim[axis] / 2u;
  }
  let omega = pow(p.theta, -2.0 * f32(j - first_pair) / f32(p.axis_dim[axis]));
  let angle = ids[n * p.axis_count + axis] * omega;
  let c = cos(angle);
  let s = sin(angle);
  let at = p.offset + (gid.z * p.tokens + n) * p.row_stride + row_pair;
  let v = x[at];
  x[at] = vec2<f32>(v.x * c - v.y * s, v.x * s + v.y * c);
}
