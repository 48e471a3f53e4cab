// algorithm: gather kernels between images and rows of patches, one output element per invocation.
//   im2col:     out [B, Ho*Wo, C*k*k] from images [B, C, H, W] (nchw) or [B, H, W, C] (nhwc). Row
//               b*Ho*Wo + oy*Wo + ox holds the window at (oy*s - pad, ox*s - pad) ordered (c, ky, kx), as
//               PyTorch flattens a Conv2d weight [O, C, k, k]; so im2col + linear(W.view(O, C*k*k)) is the
//               convolution. Window pixels in the padding are 0.
//   unpatchify: out [B, C, H, W] from tokens [B, (H/k)*(W/k), C*k*k] (k = patch), vectors ordered
//               (c, py, px): the inverse of im2col with k = s = patch, no padding, nchw; or (py, px, c)
//               with channels_last (diffusers' DiT and PixArt unpatchify, "nhwpqc -> nchpwq").
// Both write every output element once with consecutive invocations on consecutive outputs (coalesced
// stores); the gathered loads are strided. No arithmetic: results are exact copies.

override WG: u32 = 256;

struct Params {
  count: u32,         // output elements
  channels: u32,      // C
  height: u32,        // H of the image
  width: u32,         // W of the image
  kernel: u32,        // k (the patch size for unpatchify)
  stride: u32,        // s (unused by unpatchify: k)
  padding: u32,       // on every side (unused by unpatchify: 0)
  out_width: u32,     // Wo = floor((W + 2 pad - k) / s) + 1 (W / k for unpatchify)
  positions: u32,     // Ho * Wo: rows of patches per image
  channels_last: u32, // im2col: images are nhwc; unpatchify: vectors are (py, px, c)
}

@group(0) @binding(0) var<storage, read> src: array<f32>;        // im2col: images; unpatchify: tokens
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;  // im2col: patch rows; unpatchify: [B, C, H, W]
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn im2col(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let e = grid_element(wid, grid, lid, 0u, 1u, WG); // common.wgsl
  if (e >= p.count) {
    return;
  }
  let window = p.kernel * p.kernel;
  let cols = p.channels * window;
  let row = e / cols; // b * positions + position
  let col = e % cols; // (c, ky, kx)
  let b = row / p.positions;
  let position = row % p.positions;
  let c = col / window;
  // Coordinates in the padded image: the real pixel is (py - padding, px - padding) when inside.
  let py = (position / p.out_width) * p.stride + (col % window) / p.kernel;
  let px = (position % p.out_width) * p.stride + col % p.kernel;
  var value = 0.0;
  if (py >= p.padding && py < p.height + p.padding && px >= p.padding && px < p.width + p.padding) {
    let iy = py - p.padding;
    let ix = px - p.padding;
    if (p.channels_last != 0u) {
      value = src[((b * p.height + iy) * p.width + ix) * p.channels + c];
    } else {
      value = src[((b * p.channels + c) * p.height + iy) * p.width + ix];
    }
  }
  dst[e] = value;
}

@compute @workgroup_size(WG)
fn unpatchify(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let e = grid_element(wid, grid, lid, 0u, 1u, WG); // common.wgsl
  if (e >= p.count) {
    return;
  }
  let ix = e % p.width;
  let iy = (e / p.width) % p.height;
  let plane = e / (p.width * p.height); // b * C + c
  let c = plane % p.channels;
  let b = plane / p.channels;
  let token = (iy / p.kernel) * p.out_width + ix / p.kernel;
  var col = (c * p.kernel + iy % p.kernel) * p.kernel + ix % p.kernel;
  if (p.channels_last != 0u) {
    col = ((iy % p.kernel) * p.kernel + ix % p.kernel) * p.channels + c;
  }
  dst[e] = src[(b * p.positions + token) * p.channels * p.kernel * p.kernel + col];
}
