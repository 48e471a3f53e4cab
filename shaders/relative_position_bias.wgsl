// algorithm: T5's relative position bias as attention score biases, gathered from the table:
// out[h, i, j] = table[bucket[j - i + L - 1], h] for key j < keys (the prompt's real tokens), MASKED_SCORE for
// the padding keys after them, which is how transformers' attention mask enters the same scores. The buckets
// of the 2L - 1 offsets are computed on the host (they depend on L and the config only, and must round the
// logarithm as torch does); one invocation writes one element, consecutive invocations consecutive keys.

// struct Params is generated from its declaration in src/ops/relative_position_bias.ts.

// Below any real score, yet finite when a score is added to it: exp(MASKED_SCORE + s - m) is exactly 0 for
// every real running max m, as transformers' finfo(f32).min mask gives weight 0. Key 0 is never masked.
const MASKED_SCORE: f32 = -1.0e30;

override WG: u32 = 64;

// binding 0, table [buckets, heads] in its stored dtype: load_table() from src/ops/stored_weights.ts
@group(0) @binding(1) var<storage, read> bucket: array<u32>;    // [2L - 1]: bucket of offset j - i, from -(L - 1)
@group(0) @binding(2) var<storage, read> keys: array<u32>;      // [1]: unmasked keys 1..L
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [heads, L, L]
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= p.length) {
    return;
  }
  let i = gid.y;
  let h = gid.z;
  var score = MASKED_SCORE;
  if (j < keys[0]) {
    let b = min(bucket[j + p.length - 1u - i], p.buckets - 1u);
    score = load_table(b * p.heads + h);
  }
  out[(h * p.length + i) * p.length + j] = score;
}
