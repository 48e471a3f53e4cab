import assert from "node:assert/strict";
import { KernelError } from "../../src/gpu/kernel.ts";
import { groupNorm } from "../../src/ops/group_norm.ts";
import { groupNorm as groupNormRef } from "../../src/ref/group_norm.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// Normalised outputs are ~1: the f32 Welford mean and M2 carry relative errors of ~1e-6 at these sizes, which
// reach the output as ~1e-6 absolute (times the affine scale, ~1). A wrong group boundary or a missing eps
// is off by >= 1e-2.
const TOL = { atol: 1e-5, rtol: 1e-5 };

const CASES = [
  { shape: [2, 6, 5, 7], groups: 3, affine: true, silu: false, offset: 0 },
  { shape: [1, 12, 9, 4], groups: 4, affine: true, silu: true, offset: 3 },
  { shape: [1, 8, 3, 3], groups: 8, affine: false, silu: false, offset: 0 }, // one channel per group
  { shape: [1, 32, 48, 48], groups: 32, affine: true, silu: true, offset: 50 }, // several chunks; far from 0
  { shape: [3, 5, 11], groups: 1, affine: true, silu: false, offset: -2 }, // 3-D input, one group
];

for (const c of CASES) {
  for (const inPlace of [false, true]) {
    gpuTest(
      `group_norm [${c.shape}] in ${c.groups} groups${c.affine ? " affine" : ""}${c.silu ? " + SiLU" : ""}` +
        `${inPlace ? " in place" : ""} matches the reference`,
      async (ctx) => {
        const size = c.shape.reduce((a, b) => a * b);
        const xData = randn(size, 5).map((v) => v * 2 + c.offset);
        const channels = c.shape[1];
        const w = c.affine ? randn(channels, 6).map((v) => 1 + 0.2 * v) : undefined;
        const b = c.affine ? randn(channels, 7, 0.1) : undefined;
        const x = ctx.pool.upload(xData, c.shape);
        const weight = w && ctx.pool.upload(w, [channels]);
        const bias = b && ctx.pool.upload(b, [channels]);
        const op = groupNorm(ctx, x, { groups: c.groups, eps: 1e-6, weight, bias, silu: c.silu, inPlace });
        assert.equal(op.out === x, inPlace);
        const got = await runAndRead(ctx, op.dispatches, op.out);
        assertClose(got, groupNormRef(xData, op.geometry, w, b, c.silu), TOL);
        op.release();
        for (const t of [x, weight, bias]) t?.release();
      },
    );
  }
}

gpuTest("group_norm rejects groups that do not divide the channels, naming both", (ctx) => {
  const x = ctx.pool.tensor([1, 6, 4, 4]);
  assert.throws(
    () => groupNorm(ctx, x, { groups: 4, eps: 1e-6 }),
    (e: unknown) => e instanceof KernelError && /groups 4 must divide the 6 channels/.test(e.message),
  );
  x.release();
});
