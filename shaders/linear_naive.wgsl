// algorithm: naive linear y = x W^T, the matmul bench's baseline for shaders/linear.wgsl: one invocation per
// output, a scalar loop over K reading one f32 of x and one of W per step (2 loads per multiply-add).

override WG: u32 = 8; // workgroup is WG x WG outputs

struct Params {
  rows: u32,  // M
  cols: u32,  // N
  depth: u32, // K
}

@group(0) @binding(0) var<storage, read> x: array<f32>;        // [M, K]
@group(0) @binding(1) var<storage, read> w: array<f32>;        // [N, K]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // [M, N]
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG, WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let r = gid.y;
  if (r >= p.rows || c >= p.cols) {
    return;
  }
  var sum = 0.0;
  for (var k = 0u; k < p.depth; k++) {
    sum += x[r * p.depth + k] * w[c * p.depth + k];
  }
  y[r * p.cols + c] = sum;
}
