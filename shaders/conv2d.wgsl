// algorithm: direct 2-D convolution, NCHW, stride 1, zero padding, with an optional nearest-neighbour
// upsampling of the input folded into its reads (diffusers' Upsample2D: interpolate x2, then a 3x3 conv, with
// no upsampled tensor in memory). Each invocation ("lane") owns OT output channels x XT consecutive output
// columns of one output row, as OT vec4 accumulators when XT = 4: per input channel and kernel row it loads
// XT + K - 1 input values once and reuses each for K x OT multiply-adds. Weight loads clamp the channel into
// range; only the epilogue tests bounds. Epilogue: + bias, then out = v or out += v (a residual already in
// out, as in ResnetBlock2D's output = shortcut + conv2(h)).
// The tile (OT, XT, K) is generated text (src/ops/conv2d_wgsl.ts): the w binding with load_w(), the
// accumulators and the entry point `main`; this file holds what does not depend on it.

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;

struct Params {
  channels: u32,    // C
  height: u32,      // H of x (before upsampling)
  width: u32,       // W of x
  out_channels: u32,
  out_height: u32,
  out_width: u32,
  padding: u32,
  upsample: u32,    // 1, or the nearest-neighbour factor
  o_tiles: u32,     // workgroups along output channels per sample (grid z = batch * o_tiles)
  flags: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;          // [B, C, H, W]
// binding 1, w [O, C, K, K] in its stored dtype: generated with load_w()
@group(0) @binding(2) var<storage, read> bias: array<f32>;       // [O]; a stand-in without FLAG_BIAS
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [B, O, Ho, Wo]
@group(0) @binding(4) var<uniform> p: Params;

// Input value at upsampled column ix of the row starting at `row`; zero in the padding.
fn load_x(row: u32, ix: i32) -> f32 {
  if (ix < 0 || ix >= i32(p.width * p.upsample)) {
    return 0.0;
  }
  return x[row + u32(ix) / p.upsample];
}

fn finish(b: u32, o: u32, y: u32, xo: u32, acc: f32) {
  if (o >= p.out_channels || xo >= p.out_width) {
    return;
  }
  var v = acc;
  if ((p.flags & FLAG_BIAS) != 0u) {
    v += bias[o];
  }
  let i = ((b * p.out_channels + o) * p.out_height + y) * p.out_width + xo;
  if ((p.flags & FLAG_ACCUMULATE) != 0u) {
    v += out[i];
  }
  out[i] = v;
}
