import assert from "node:assert/strict";
import { batchNoise, gaussianNoise } from "../../src/pipeline/noise.ts";

Deno.test("noise: same seed, same values; another seed, other values", () => {
  assert.deepEqual(gaussianNoise(7, 785), gaussianNoise(7, 785));
  assert.notDeepEqual(gaussianNoise(7, 16), gaussianNoise(8, 16));
});

Deno.test("noise: standard normal moments over 100k values (mean within 0.01, variance within 0.02)", () => {
  const v = gaussianNoise(123, 100_000);
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
  assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.02, `variance ${variance}`);
  assert.ok(v.every(Number.isFinite));
});

Deno.test("noise: image k of a batch is the single image of seed + k", () => {
  const batch = batchNoise(40, 3, 784);
  assert.deepEqual(batch.subarray(2 * 784), gaussianNoise(42, 784));
});
