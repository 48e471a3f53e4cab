// relative_position_bias (T5's score bias gathered from a table, the padding keys masked) against its CPU
// reference src/ref/relative_position_bias.ts. A gather copies stored values: every case is exact.
import assert from "node:assert/strict";
import { disposeDispatches, KernelError } from "../../src/gpu/kernel.ts";
import { relativePositionBias } from "../../src/ops/relative_position_bias.ts";
import { MASKED_SCORE, relativePositionBias as reference } from "../../src/ref/relative_position_bias.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { encodeHalf } from "../support/half.ts";
import { randn, rng } from "../support/random.ts";

const EXACT = { atol: 0, rtol: 0 };

/** Buckets of offsets -(L-1)..L-1 that are not a function of |offset| alone, so a flipped sign shows. */
function buckets(length: number, count: number, seed: number): Uint32Array {
  const next = rng(seed);
  return Uint32Array.from({ length: 2 * length - 1 }, () => Math.floor(next() * count));
}

const CASES = [
  { what: "f32 table, 3 heads, 13 tokens, no mask", dtype: "f32", heads: 3, count: 8, length: 13, keys: 13 },
  {
    what: "bf16 table, 5 heads, 70 tokens (two workgroups a row), 41 real",
    dtype: "bf16",
    heads: 5,
    count: 32,
    length: 70,
    keys: 41,
  },
  { what: "f16 table, 2 heads, one real token of 9", dtype: "f16", heads: 2, count: 6, length: 9, keys: 1 },
  { what: "f32 table, a single token", dtype: "f32", heads: 4, count: 4, length: 1, keys: 1 },
] as const;

for (const c of CASES) {
  gpuTest(`relative_position_bias gathers and masks: ${c.what}`, async (ctx) => {
    const values = randn(c.count * c.heads, 40 + c.length);
    const { bytes, rounded } = c.dtype === "f32"
      ? { bytes: new Uint8Array(values.buffer), rounded: values }
      : encodeHalf(values, c.dtype);
    const table = ctx.pool.uploadBytes(bytes, [c.count, c.heads], c.dtype);
    const bucketIds = buckets(c.length, c.count, c.length);
    const bucket = ctx.pool.upload(bucketIds, [bucketIds.length]);
    const keys = ctx.pool.upload(Uint32Array.of(c.keys), [1]);
    const out = ctx.pool.tensor([c.heads, c.length, c.length]);
    const dispatch = relativePositionBias(ctx, table, bucket, keys, out);
    const got = await runAndRead(ctx, [dispatch], out);
    const want = reference(rounded, c.heads, bucketIds, c.keys);
    assertClose(got, want, EXACT, "bias");
    assert.equal(got.filter((v) => v === MASKED_SCORE).length, c.heads * c.length * (c.length - c.keys));
    disposeDispatches([dispatch]);
    for (const t of [table, bucket, keys, out]) t.release();
  });
}

gpuTest("relative_position_bias rejects mismatched shapes and dtypes, naming the expected one", (ctx) => {
  const table = ctx.pool.tensor([8, 3]);
  const bucket = ctx.pool.upload(new Uint32Array(9), [9]);
  const evenBucket = ctx.pool.upload(new Uint32Array(8), [8]);
  const keys = ctx.pool.upload(Uint32Array.of(5), [1]);
  const floatKeys = ctx.pool.tensor([1]);
  const out = ctx.pool.tensor([3, 5, 5]);
  const wrongOut = ctx.pool.tensor([3, 5, 4]);
  const isError = (pattern: RegExp) => (e: unknown) =>
    e instanceof KernelError && e.message.startsWith("relative_position_bias: ") && pattern.test(e.message);
  assert.throws(
    () => relativePositionBias(ctx, table.view([24]), bucket, keys, out),
    isError(/table must be f32, f16 or bf16 \[buckets, heads\]/),
  );
  assert.throws(
    () => relativePositionBias(ctx, table, evenBucket, keys, out),
    isError(/bucket u32 \[8\].*bucket must be u32 \[2L - 1\]/),
  );
  assert.throws(
    () => relativePositionBias(ctx, table, bucket, floatKeys, out),
    isError(/keys must be u32 \[1\]/),
  );
  assert.throws(
    () => relativePositionBias(ctx, table, bucket, keys, wrongOut),
    isError(/out f32 \[3, 5, 4\]: out must be f32 \[3, 5, 5\] \(heads, L, L\)/),
  );
  for (const t of [table, bucket, evenBucket, keys, floatKeys, out, wrongOut]) t.release();
});
