// algorithm: direct 2-D convolution, NCHW, stride 1, zero padding, with an optional nearest-neighbour
// upsampling of the input folded into its reads (diffusers' Upsample2D: interpolate x2, then a 3x3 conv, with
// no upsampled tensor in memory), summed over KT temporal taps: the causal 3-D convolution of a video VAE.
// Tensors are frame-major, [frames, B, C, H, W]: a frame is a batch of B images, so with KT = 1 this is the
// 2-D convolution of frames * B images. With KT > 1, output frame t reads frames t .. t + KT - 1 of the
// sequence [history (KT - 1 frames), x]: the frames before x come from `history` (Wan's feature cache), so
// there is no temporal padding here. Each invocation ("lane") owns OT output channels x XT consecutive output
// columns of one output row of one image, as OT vec4 accumulators when XT = 4: per input frame, channel and
// kernel row it loads XT + K - 1 input values once and reuses each for K x OT multiply-adds. Weight loads
// clamp the channel into range; only the epilogue tests bounds. Epilogue: + bias, then out = v or out += v
// (a residual already in out, as in ResnetBlock2D's output = shortcut + conv2(h)). A split output (Wan's
// time_conv, split 2) writes channel block s of O / split into frame t * split + s.
// The tile (OT, XT, K, KT) is generated text (src/ops/conv2d_wgsl.ts): the w binding with load_w(), the
// accumulators and the entry point `main`; this file holds what does not depend on it.

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;

struct Params {
  channels: u32,       // C
  height: u32,         // H of x (before upsampling)
  width: u32,          // W of x
  out_channels: u32,   // O
  out_height: u32,
  out_width: u32,
  padding: u32,
  upsample: u32,       // 1, or the nearest-neighbour factor
  o_tiles: u32,        // workgroups along output channels per image (grid z = frames * B * o_tiles)
  flags: u32,
  frame_batch: u32,    // B: images per frame
  split: u32,          // output frames per input frame
  split_channels: u32, // O / split: the channels of one output image
}

@group(0) @binding(0) var<storage, read> x: array<f32>;          // [T, B, C, H, W]
// binding 1, w [O, C, KT, K, K] in its stored dtype: generated with load_w()
@group(0) @binding(2) var<storage, read> bias: array<f32>;       // [O]; a stand-in without FLAG_BIAS
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [T * split, B, O / split, Ho, Wo]
@group(0) @binding(4) var<storage, read> history: array<f32>;    // [KT - 1, B, C, H, W]; a stand-in if KT = 1
@group(0) @binding(5) var<uniform> p: Params;

// Input value at upsampled column ix of the row starting at `row`; zero in the padding.
fn load_x(row: u32, ix: i32) -> f32 {
  if (ix < 0 || ix >= i32(p.width * p.upsample)) {
    return 0.0;
  }
  return x[row + u32(ix) / p.upsample];
}

// The same from history (a row numbered as in x, of an image of history).
fn load_frame(from_history: bool, row: u32, ix: i32) -> f32 {
  if (!from_history) {
    return load_x(row, ix);
  }
  if (ix < 0 || ix >= i32(p.width * p.upsample)) {
    return 0.0;
  }
  return history[row + u32(ix) / p.upsample];
}

// t, b: the input frame and sample of the lane's output image.
fn finish(t: u32, b: u32, o: u32, y: u32, xo: u32, acc: f32) {
  if (o >= p.out_channels || xo >= p.out_width) {
    return;
  }
  var v = acc;
  if ((p.flags & FLAG_BIAS) != 0u) {
    v += bias[o];
  }
  let s = o / p.split_channels;
  let image = (t * p.split + s) * p.frame_batch + b;
  let i = ((image * p.split_channels + o - s * p.split_channels) * p.out_height + y) * p.out_width + xo;
  if ((p.flags & FLAG_ACCUMULATE) != 0u) {
    v += out[i];
  }
  out[i] = v;
}
