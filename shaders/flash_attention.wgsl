// algorithm: multi-head softmax attention out = softmax(q k^T * scale) v with an online softmax (FlashAttention's
// running max m and sum l per query row: a key with score s > m rescales the output accumulator and l by
// exp(m - s)), so no [N, N] score matrix exists anywhere; the key loop reads each k and v row once.
// A lane owns RL query rows of one (batch, head): their q (times scale) and output accumulators live in
// named vec4 registers, and every k and v load serves all RL rows. All lanes of a workgroup read the same
// key at the same time (addresses depend on workgroup_id and the loop counter only): one cache line for a
// whole GPU wave. On llvmpipe (Mesa 22) every storage load is a per-lane scalar loop whatever its address,
// so rows per lane set the speed there; sharing k/v tiles through workgroup memory measured slower (its
// loads are the same per-lane loops, plus two barriers per tile).
// Scores stay in natural units and exp() takes s - m, so large scores lose no precision to a log2(e)
// factor; with integer-valued inputs and a power-of-two scale the scores are exact.
// Joint (FLUX dual stream) attention: the attended sequence is the text tokens then the image tokens, each
// stream read through its own q/k/v views; the output holds the rows in that order. The kernel without a
// text stream is generated without the text key loop, and its text bindings repeat the image ones.
// Cross-attention (Wan's attn2): the queries are the image rows only and they attend the text keys only, so
// the two streams may have any lengths; the output holds the image rows. The text q and image k/v bindings
// repeat other views then (never read).
// One stream may also be masked (generated only when asked; without them the text is the plain kernel's):
// causal (CLIP's text encoder): row n attends keys j <= n; the key loop stops after the workgroup's last row
// and later keys score NO_SCORE, whose weight exp(NO_SCORE - m) is exactly 0 (key 0 always counts, so m is
// finite by then). score_bias (T5's relative position bias): bias[h, n, j] is added to the scaled score.
// Without a bias its binding repeats the image q view (never read).
// The register tile and the key loops are generated per head dim (src/ops/flash_attention_wgsl.ts): it
// defines D4 (vec4s per head), RL (rows per lane), WG (lanes) and the entry point `main`; this file holds
// what does not depend on them.

// Stands in for -inf (a WGSL constant cannot be infinite): below any real score, and exp(NO_SCORE - m) == 0
// for every finite running max m.
const NO_SCORE: f32 = -3.0e38;

// Views in vec4 units: element (b, n, h, d) of a view is component d%4 of vec4 offset + (b*tokens + n)*stride
// + h*D4 + d/4.
struct Params {
  text_tokens: u32,  // Nt, 0 without a text stream; cross-attention: the keys
  image_tokens: u32, // Ni >= 1
  heads: u32,
  q_text_offset: u32,
  q_text_stride: u32,
  k_text_offset: u32,
  k_text_stride: u32,
  v_text_offset: u32,
  v_text_stride: u32,
  q_image_offset: u32,
  q_image_stride: u32,
  k_image_offset: u32,
  k_image_stride: u32,
  v_image_offset: u32,
  v_image_stride: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> q_text: array<vec4<f32>>;  // view [batch, Nt, heads, D]
@group(0) @binding(1) var<storage, read> k_text: array<vec4<f32>>;  // view [batch, Nt, heads, D]
@group(0) @binding(2) var<storage, read> v_text: array<vec4<f32>>;  // view [batch, Nt, heads, D]
@group(0) @binding(3) var<storage, read> q_image: array<vec4<f32>>; // view [batch, Ni, heads, D]
@group(0) @binding(4) var<storage, read> k_image: array<vec4<f32>>; // view [batch, Ni, heads, D]
@group(0) @binding(5) var<storage, read> v_image: array<vec4<f32>>; // view [batch, Ni, heads, D]
@group(0) @binding(6) var<storage, read_write> out: array<vec4<f32>>; // [batch, Nt + Ni (cross: Ni), heads * D]
@group(0) @binding(7) var<storage, read> score_bias: array<f32>;     // [heads, Ni, Ni] (one stream)
@group(0) @binding(8) var<uniform> p: Params;

// First vec4 of head h of token n of batch entry b in a view of `tokens` rows per batch entry.
fn view_at(offset: u32, stride: u32, tokens: u32, b: u32, n: u32, h: u32) -> u32 {
  return offset + (b * tokens + n) * stride + h * D4;
}

// First vec4 of head h of row n (text rows first) of batch entry b in the output of `rows` rows per entry.
fn out_at(rows: u32, b: u32, n: u32, h: u32) -> u32 {
  return ((b * rows + n) * p.heads + h) * D4;
}
