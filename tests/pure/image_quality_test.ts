import assert from "node:assert/strict";
import { psnr, ssim } from "../../src/metrics/image_quality.ts";
import { uniform } from "../support/random.ts";

const SIZE = 28 * 28;

Deno.test("psnr: identical is Infinity; a uniform error e over range 2 is 10 log10(4 / e^2)", () => {
  const a = uniform(SIZE, 1);
  assert.equal(psnr(a, a, 2), Infinity);
  const b = a.map((v) => v + 0.1);
  assert.ok(Math.abs(psnr(a, b, 2) - 10 * Math.log10(4 / 0.01)) < 1e-4);
});

Deno.test("ssim: identical images score 1, noise lowers it, unrelated images score near 0", () => {
  const a = uniform(SIZE, 2);
  assert.ok(Math.abs(ssim(a, a, 28, 28, 2) - 1) < 1e-12);
  const noisy = a.map((v, i) => v + 0.2 * uniform(SIZE, 3)[i]);
  const score = ssim(a, noisy, 28, 28, 2);
  assert.ok(score > 0.5 && score < 0.99, `slightly noisy: ${score}`);
  assert.ok(Math.abs(ssim(a, uniform(SIZE, 4), 28, 28, 2)) < 0.1, "unrelated images");
});

Deno.test("ssim: a constant brightness shift keeps structure but costs luminance", () => {
  const a = uniform(SIZE, 5, 0.2, 0.8);
  const shifted = a.map((v) => v + 0.1);
  const score = ssim(a, shifted, 28, 28, 2);
  assert.ok(score < 1 && score > 0.5, `${score}`);
  assert.throws(() => ssim(a, a, 10, 10, 2), /must hold 10x10 values/);
});
