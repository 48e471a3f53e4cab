import assert from "node:assert/strict";
import { fitGaussian, frechetDistance, symmetricEigen } from "../../src/metrics/frechet.ts";
import { randn } from "../support/random.ts";

const close = (a: number, b: number, tol: number) => Math.abs(a - b) <= tol;

Deno.test("frechet: one dimension reduces to (m1-m2)^2 + s1 + s2 - 2 sqrt(s1 s2)", () => {
  const a = { mean: Float64Array.of(1), covariance: Float64Array.of(4) };
  const b = { mean: Float64Array.of(3), covariance: Float64Array.of(9) };
  assert.ok(close(frechetDistance(a, b), 4 + 4 + 9 - 2 * 6, 1e-12));
});

Deno.test("frechet: a distribution against itself is 0; a shift adds |shift|^2", () => {
  const dim = 8;
  const g = fitGaussian(randn(400 * dim, 3), 400, dim);
  assert.ok(Math.abs(frechetDistance(g, g)) < 1e-9, `${frechetDistance(g, g)}`);
  const shifted = { mean: g.mean.map((m) => m + 0.5), covariance: g.covariance };
  assert.ok(close(frechetDistance(g, shifted), dim * 0.25, 1e-9));
});

Deno.test("frechet: diagonal covariances match the closed form sum (sqrt(a) - sqrt(b))^2", () => {
  const a = { mean: new Float64Array(3), covariance: Float64Array.of(1, 0, 0, 0, 4, 0, 0, 0, 9) };
  const b = { mean: new Float64Array(3), covariance: Float64Array.of(4, 0, 0, 0, 4, 0, 0, 0, 1) };
  assert.ok(close(frechetDistance(a, b), 1 + 0 + 4, 1e-9));
});

Deno.test("symmetric eigen: reconstructs the matrix", () => {
  const m = Float64Array.of(2, 1, 0, 1, 3, 1, 0, 1, 4);
  const { values, vectors } = symmetricEigen(m, 3);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let sum = 0;
      for (let k = 0; k < 3; k++) sum += vectors[i * 3 + k] * values[k] * vectors[j * 3 + k];
      assert.ok(close(sum, m[i * 3 + j], 1e-10), `[${i},${j}] ${sum} vs ${m[i * 3 + j]}`);
    }
  }
});
