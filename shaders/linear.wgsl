// algorithm: register-tiled linear layer y = x W^T + b with a fused epilogue, no workgroup memory.
// Every invocation ("lane") owns an RM x RN block of outputs in named accumulators and walks K once, loading
// RM rows of x and RN rows of W per step (a vec4 of K per load when K % 4 == 0): RM*RN dot products per
// RM+RN loads. Rows of a workgroup tile are i*LM + lane_m, columns j*LN + lane_n, so neighbouring lanes
// store neighbouring outputs. Loads clamp rows and columns into range (no divergent branch in the K loop);
// only the epilogue tests bounds.
// On llvmpipe (Mesa 22) every storage load is a loop over the SIMD lanes with a bounds test per component,
// even when all lanes read one address, while a dot is a few SIMD instructions: so the CPU tiling is as large
// as compile time allows (lanes sharing x rows gained nothing there). GPUs get a small tile (src/ops/linear.ts).
// The K loop and the tile are generated text (src/ops/linear_wgsl.ts): it defines RM, RN, LM, LN, the
// K-vector type KVec (vec4<f32> or f32), kdot(), the W binding with load_w() (src/ops/stored_weights.ts) and
// the entry point `main`; this file holds what does not
// depend on the tiling. Epilogue per output element, chosen by uniform flags (one pipeline for all):
//   v = acc (+ bias[c]); v = act(v); v *= gate[...] (gated); out[o] = v, or out[o] += v (accumulate).
// A gate view of one vector per row (rows_per_gate 1, stride N) is an elementwise product (T5's gated GELU).

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;
const FLAG_GATE: u32 = 4u;
const ACT_GELU_TANH: u32 = 1u;
const ACT_SILU: u32 = 2u;
const ACT_RELU: u32 = 3u;
const ACT_QUICK_GELU: u32 = 4u;
const ACT_GELU_ERF: u32 = 5u;

struct Params {
  rows: u32,             // M: rows of x per batch entry (all folded rows when W is shared)
  cols: u32,             // N
  depth: u32,            // K in KVec units (K / 4 or K)
  w_batch_stride: u32,   // KVec units between batch entries of W (N * depth), 0 when W is shared
  out_offset: u32,       // element of out holding output row 0, column 0
  out_row_stride: u32,   // elements between output rows (>= N)
  flags: u32,            // FLAG_* bits
  activation: u32,       // ACT_*, 0 for none
  gate_offset: u32,      // element of gate holding the gate of row 0, column 0
  gate_stride: u32,      // elements between the gate vectors of consecutive row groups
  rows_per_gate: u32,    // rows sharing one gate vector (tokens per sample)
}

@group(0) @binding(0) var<storage, read> x: array<KVec>;         // [batch, M, K] or [rows, K]
// binding 1, w [batch, N, K] or [N, K] (PyTorch Linear) in its stored dtype: generated with load_w()
@group(0) @binding(2) var<storage, read> bias: array<f32>;       // [N]; a stand-in when FLAG_BIAS is off
@group(0) @binding(3) var<storage, read> gate: array<f32>;       // view, see gate_offset; or a stand-in
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // [batch * M rows, N] at out_offset, out_row_stride
@group(0) @binding(5) var<uniform> p: Params;

// CLIP's quick_gelu: x * sigmoid(1.702 x).
fn quick_gelu(x: f32) -> f32 {
  return x / (1.0 + exp(-1.702 * x));
}

// erfc(z) for z >= 0, Numerical Recipes' erfcc (W. H. Press et al.): fractional error < 1.2e-7 everywhere,
// so the negative tail of GELU keeps its relative precision too. exp() underflows to 0 for large z.
fn erfc_nonnegative(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + poly);
}

// PyTorch's exact GELU: 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2).
fn gelu_erf(x: f32) -> f32 {
  let c = erfc_nonnegative(abs(x) * 0.7071067811865476);
  return 0.5 * x * select(2.0 - c, c, x < 0.0);
}

fn activate(v: f32) -> f32 {
  switch p.activation {
    case ACT_GELU_TANH: {
      return gelu_tanh(v); // common.wgsl
    }
    case ACT_SILU: {
      return silu(v);
    }
    case ACT_RELU: {
      return max(v, 0.0);
    }
    case ACT_QUICK_GELU: {
      return quick_gelu(v);
    }
    case ACT_GELU_ERF: {
      return gelu_erf(v);
    }
    default: {
      return v;
    }
  }
}

// The epilogue of output (batch z, row r, column c) whose dot product is `acc`; lanes past the edge skip it.
// Rows of all batch entries are numbered together (g = z * M + r), for the output view and the gate groups.
fn finish(z: u32, r: u32, c: u32, acc: f32) {
  if (r >= p.rows || c >= p.cols) {
    return;
  }
  let g = z * p.rows + r;
  var v = acc;
  if ((p.flags & FLAG_BIAS) != 0u) {
    v += bias[c];
  }
  v = activate(v);
  if ((p.flags & FLAG_GATE) != 0u) {
    v *= gate[p.gate_offset + (g / p.rows_per_gate) * p.gate_stride + c];
  }
  let o = p.out_offset + g * p.out_row_stride + c;
  if ((p.flags & FLAG_ACCUMULATE) != 0u) {
    v += out[o];
  }
  out[o] = v;
}

// First KVec of row r (clamped into range, so edge lanes load real data they then discard) of x or W.
fn x_base(z: u32, r: u32) -> u32 {
  return (z * p.rows + min(r, p.rows - 1u)) * p.depth;
}

fn w_base(z: u32, c: u32) -> u32 {
  return z * p.w_batch_stride + min(c, p.cols - 1u) * p.depth;
}
