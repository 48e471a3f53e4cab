// algorithm: a window of snapshots in one tensor, ring [slots, items, size] (one computed-step snapshot per
// slot, of `items` batch items of `size` values), and the two things the DMD calibrator asks of it.
// `gram`: per batch item, the dot products of the newest slot with every slot, each value's product kept to
// 2^-45 of max|a| * max|c| over its chunk. Workgroup (chunk, slot, item) scales both operands by powers of
// two so that |a c| < 2^49, splits each into the high 12 bits of its significand and the rest, so that the
// four partial products are exact in f32, truncates each to an integer and sums them as 64-bit
// two's-complement integers (two u32 words with carry): no float rounding is left for the order of the sum
// or the compiler to change.
// The host adds the chunks in f64. Why exact: the fit takes the singular values from this Gram matrix, whose
// eigenvalues are their squares, and truncates at 1e-4 of the leading one; an f32 sum (~1e-7 relative)
// would blur every singular value below ~3e-4 of it.
// `combine`: out[b, e] = (ADD ? out[b, e] : 0) + sum_j w[b, j] * ring[j, b, e], the forecast as a linear
// combination of the snapshots; a slot of weight 0 is not read (it may hold a stale or unset value).

override WG: u32 = 256;
// Values per invocation: the gram's chunk is WG * ITEMS <= 4096 values, which keeps its sum below 2^61.
override ITEMS: u32 = 16u;
override ADD: bool = false;

struct Params {
  size: u32,   // values per batch item and slot
  items: u32,
  slots: u32,
  chunks: u32, // gram workgroups per (slot, item)
  newest: u32, // gram: the slot the new snapshot went to
}

@group(0) @binding(0) var<storage, read> ring: array<f32>;                // [slots, items, size]
@group(0) @binding(1) var<storage, read> weights: array<f32>;             // [items, slots]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;           // [items, size]
@group(0) @binding(3) var<storage, read_write> partial: array<vec4<u32>>; // [items, slots, chunks]
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> tree: array<vec2<u32>, WG>;

const NON_FINITE: u32 = 0x7f800000u; // bits of +inf: |x| bits at or above it are inf or NaN
const TWO_POW_32: f32 = 4294967296.0;
const TWO_POW_MINUS_32: f32 = 2.3283064365386963e-10;

fn at(slot: u32, item: u32, e: u32) -> f32 {
  return ring[(slot * p.items + item) * p.size + e];
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  let lo = a.x + b.x;
  return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

// trunc(q) as 64-bit two's complement (lo, hi), for an f32 q with |q| < 2^62. Each step is exact: t and
// floor(t / 2^32) are integers of at most 24 significant bits, and t - hi * 2^32 < 2^32 keeps t's low bits.
fn to_fixed(q: f32) -> vec2<u32> {
  let t = trunc(abs(q));
  let hi = floor(t * TWO_POW_MINUS_32);
  let magnitude = vec2<u32>(u32(t - hi * TWO_POW_32), u32(hi));
  if (q >= 0.0) {
    return magnitude;
  }
  return add64(~magnitude, vec2<u32>(1u, 0u));
}

// 2^e for e in -126..127, from its bits (exp2 and ldexp need not be exact on every driver).
fn pow2(e: i32) -> f32 {
  return bitcast<f32>(u32(e + 127) << 23u);
}

// The high 12 bits of x's significand (11 stored and the implicit one); x - high(x) is the rest, exactly.
fn high(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) & 0xfffff000u);
}

// Component-wise max (max_not_sum) or 64-bit sum over the workgroup; every invocation gets the result.
fn reduce_tree(lid: u32, value: vec2<u32>, max_not_sum: bool) -> vec2<u32> {
  tree[lid] = value;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half = half / 2u) {
    if (lid < half) {
      tree[lid] = select(add64(tree[lid], tree[lid + half]), max(tree[lid], tree[lid + half]), max_not_sum);
    }
    workgroupBarrier();
  }
  let total = tree[0];
  workgroupBarrier();
  return total;
}

// partial[item, slot, chunk] = (lo, hi, e, bad): the chunk's dot is (hi * 2^32 + lo) * 2^e (hi signed),
// bad = 1 where a value of either slot was inf or NaN.
@compute @workgroup_size(WG)
fn gram(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let chunk = wid.x;
  let slot = wid.y;
  let item = wid.z;
  let start = chunk * WG * ITEMS + lid;
  // Non-negative f32 bit patterns order as u32, with inf and NaN above every finite value.
  var largest = vec2<u32>(0u, 0u);
  for (var k = 0u; k < ITEMS; k++) {
    let e = start + k * WG;
    if (e < p.size) {
      let bits = vec2<u32>(bitcast<u32>(abs(at(p.newest, item, e))), bitcast<u32>(abs(at(slot, item, e))));
      largest = max(largest, bits);
    }
  }
  largest = reduce_tree(lid, largest, true);
  let bad = largest.x >= NON_FINITE || largest.y >= NON_FINITE;
  // |a| < 2^ea, so |a * 2^sa| < 2^24 and |c * 2^sc| < 2^25 (clamped for values below 2^-102).
  let sa = clamp(24 - frexp(bitcast<f32>(largest.x)).exp, -126, 127);
  let sc = clamp(25 - frexp(bitcast<f32>(largest.y)).exp, -126, 127);
  let fa = pow2(sa);
  let fc = pow2(sc);
  var acc = vec2<u32>(0u, 0u);
  for (var k = 0u; k < ITEMS; k++) {
    let e = start + k * WG;
    if (!bad && e < p.size) {
      let a = at(p.newest, item, e) * fa;
      let c = at(slot, item, e) * fc;
      let ah = high(a);
      let ch = high(c);
      let al = a - ah;
      let cl = c - ch;
      acc = add64(acc, to_fixed(ah * ch));
      acc = add64(acc, to_fixed(ah * cl));
      acc = add64(acc, to_fixed(al * ch));
      acc = add64(acc, to_fixed(al * cl));
    }
  }
  let total = reduce_tree(lid, acc, false);
  if (lid == 0u) {
    partial[(item * p.slots + slot) * p.chunks + chunk] =
      vec4<u32>(total.x, total.y, bitcast<u32>(-(sa + sc)), select(0u, 1u, bad));
  }
}

@compute @workgroup_size(WG)
fn combine(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) grid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  for (var k = 0u; k < ITEMS; k++) {
    let e = grid_element(wid, grid, lid, k, ITEMS, WG); // common.wgsl
    if (e < p.items * p.size) {
      let item = e / p.size;
      var acc = 0.0;
      if (ADD) {
        acc = out[e];
      }
      for (var j = 0u; j < p.slots; j++) {
        let w = weights[item * p.slots + j];
        if (w != 0.0) {
          acc += w * at(j, item, e % p.size);
        }
      }
      out[e] = acc;
    }
  }
}
