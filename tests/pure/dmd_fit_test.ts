// The DMD fit from the Gram matrix alone (src/cache/calibrators/dmd_fit.ts) against cache-dit's DMDState on
// the DMD steps of tools/dmd_fixtures.py, with G = V^T V in f64 from the fixture's snapshots: the Gram path's
// algebra, without the GPU.
import assert from "node:assert/strict";
import { Matrix } from "ml-matrix";
import { fitFromGram, forecastWeights } from "../../src/cache/calibrators/dmd_fit.ts";
import { assertClose } from "../support/assert_close.ts";
import { readDmdFixture } from "../support/dmd_fixture.ts";

// The eigenvalues of X^T X carry f64 rounding of its largest (1e-16 relative), so the singular values come
// out to ~1e-8 of the leading one where the SVD has 1e-16: far below item 1's 1% noise modes, far above item
// 0's truncated fifth mode (f32 rounding, ~1e-7, against the 1e-4 cut). The forecasts agree within 1e-13
// here; 1e-10 leaves room for the conditioning. A wrong fit is off by > 0.05 (tools/dmd_fixtures.py).
const TOL = { atol: 1e-10, rtol: 1e-10 };

Deno.test("DMD fit from the Gram matrix equals cache-dit's DMDState on every DMD step", async () => {
  const { shape, runs } = await readDmdFixture();
  const items = shape[0];
  const size = shape[1] * shape[2];
  for (const { settings, steps } of runs) {
    const computed: Float32Array[] = [];
    let checked = 0;
    for (const s of steps) {
      if (s.computed) {
        computed.push(s.y);
        continue;
      }
      if (s.path !== "dmd") continue;
      const window = computed.slice(-s.tail);
      const got = new Float64Array(items * size);
      for (let item = 0; item < items; item++) {
        const v = new Matrix(window.map((y) => [...y.subarray(item * size, (item + 1) * size)])).transpose();
        const fit = fitFromGram(v.transpose().mmul(v), size, settings);
        assert.ok(fit, `step ${s.step}: a fit`);
        const weights = forecastWeights(fit, s.k!);
        got.set(v.mmul(Matrix.columnVector([...weights])).to1DArray(), item * size);
      }
      assertClose(got, s.expected, TOL, `history ${settings.history}: step ${s.step}`);
      checked++;
    }
    assert.equal(checked, 12);
  }
});

Deno.test("DMD fit from the Gram matrix: an all-zero or non-finite window is degenerate", () => {
  const settings = { history: 6, rank: 0, ridge: 1e-8, nDerivatives: 1 };
  assert.equal(fitFromGram(Matrix.zeros(4, 4), 10, settings), null);
  const g = Matrix.eye(4, 4);
  g.set(1, 2, NaN);
  assert.equal(fitFromGram(g, 10, settings), null);
});
