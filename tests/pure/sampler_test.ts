import assert from "node:assert/strict";
import { samplerSteps, timeGrid } from "../../src/pipeline/sampler.ts";

const close = (a: number, b: number, tol = 1e-12) => Math.abs(a - b) <= tol;

Deno.test("time grid runs from 1 to 0; a shift > 1 spends more steps at high noise", () => {
  assert.deepEqual(timeGrid(4), [1, 0.75, 0.5, 0.25, 0]);
  const shifted = timeGrid(4, 3);
  assert.equal(shifted[0], 1);
  assert.equal(shifted[4], 0);
  assert.ok(close(shifted[2], 0.75), `shift 3 maps 0.5 to 0.75, got ${shifted[2]}`);
});

Deno.test("euler: x <- x + (t_next - t) v", () => {
  const steps = samplerSteps({ sampler: "euler", steps: 4 });
  assert.deepEqual(steps.map((s) => [s.a, s.b, s.c]), [[1, -0.25, 0], [1, -0.25, 0], [1, -0.25, 0], [
    1,
    -0.25,
    0,
  ]]);
});

Deno.test("ddim with eta 0 is Euler on the linear flow path; with eta 1 it adds noise but not at the end", () => {
  const euler = samplerSteps({ sampler: "euler", steps: 7, shift: 2 });
  const ddim = samplerSteps({ sampler: "ddim", steps: 7, shift: 2, eta: 0 });
  ddim.forEach((s, i) => {
    assert.ok(
      close(s.a, euler[i].a, 1e-12) && close(s.b, euler[i].b, 1e-12),
      `step ${i}: ${JSON.stringify(s)}`,
    );
    assert.equal(s.c, 0);
  });
  const noisy = samplerSteps({ sampler: "ddim", steps: 7, eta: 1 });
  assert.ok(noisy.slice(0, -1).every((s) => s.c > 0));
  assert.equal(noisy[noisy.length - 1].c, 0, "the last step lands on x0 with no noise");
});

Deno.test("ddim with eta 1: with the true velocity, a x + b v is the DDIM posterior mean", () => {
  // x_t built from known x0 and eps; with the true v the deterministic part lands on the DDIM posterior mean.
  const [x0, eps] = [0.3, -1.2];
  for (const s of samplerSteps({ sampler: "ddim", steps: 5, eta: 1 })) {
    const x = (1 - s.t) * x0 + s.t * eps;
    const v = eps - x0;
    const mean = s.a * x + s.b * v;
    const expectedMean = (1 - s.tNext) * x0 + Math.sqrt(s.tNext ** 2 - s.c ** 2) * eps;
    assert.ok(close(mean, expectedMean, 1e-12), `t=${s.t}: ${mean} vs ${expectedMean}`);
  }
});
