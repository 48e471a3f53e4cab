import assert from "node:assert/strict";
import { KernelError } from "../../src/gpu/kernel.ts";
import { rope, type RopeAxes, ropeTable } from "../../src/ops/rope.ts";
import { rope as ropeRef } from "../../src/ref/rope.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn, uniform } from "../support/random.ts";

// The table holds cos/sin of float64 angles rounded once to f32, and the kernel does two products and one
// sum per output in f32: |error| <= ~3 * 2^-24 * (|x0| + |x1|) ~ 1.6e-6 for randn inputs (|x| < ~4.5),
// whatever the angle (the reference forms every angle in float64 from the ids).
const TOL = { atol: 2e-6, rtol: 0 };

const FLUX_AXES: RopeAxes = { axesDim: [16, 56, 56], theta: 10000 };

/** FLUX ids: text tokens at [0, 0, 0], then the image grid at [0, row, col]. */
function fluxIds(textTokens: number, rows: number, cols: number): Float32Array {
  const ids = new Float32Array((textTokens + rows * cols) * 3);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const n = textTokens + r * cols + c;
      ids[n * 3 + 1] = r;
      ids[n * 3 + 2] = c;
    }
  }
  return ids;
}

gpuTest(
  "rope FLUX 3-axis ids, B=2 H=3 D=128: rotates q and k in place inside fused qkv, v untouched",
  async (ctx) => {
    const [batch, heads, headDim] = [2, 3, 128];
    const ids = fluxIds(4, 3, 5);
    const tokens = ids.length / 3;
    const rowStride = 3 * heads * headDim; // [q | k | v] per token
    const data = randn(batch * tokens * rowStride, 11);
    const qkv = ctx.pool.upload(data, [batch, tokens, rowStride]);
    const table = ropeTable(ctx, ids, [tokens, 3], FLUX_AXES);
    const q = { tensor: qkv, offset: 0, rowStride };
    const k = { tensor: qkv, offset: heads * headDim, rowStride };
    const op = rope(ctx, [q, k], table, { batch, heads, headDim });
    const got = await runAndRead(ctx, op.dispatches, qkv);
    const dims = { batch, heads };
    const want = ropeRef(ropeRef(data, q, ids, FLUX_AXES, dims), k, ids, FLUX_AXES, dims);
    assertClose(got, want, TOL, "qkv");
    for (let row = 0; row < batch * tokens; row++) {
      const v = row * rowStride + 2 * heads * headDim;
      assert.deepEqual(
        got.subarray(v, v + heads * headDim),
        data.subarray(v, v + heads * headDim),
        `v of row ${row} changed`,
      );
    }
    // Image tokens away from the origin must really turn: a kernel that did nothing would fail above, and
    // this guards the reference itself against a silent identity.
    const last = (batch * tokens - 1) * rowStride;
    assert.ok(
      Math.abs(want[last + 100] - data[last + 100]) > 1e-3,
      "reference left a rotated pair unchanged",
    );
    op.release();
    table.release();
    qkv.release();
  },
);

gpuTest("rope odd shapes: axes [2, 4, 6], theta 100, H=5, B=3, float positions, padded view", async (ctx) => {
  const axes: RopeAxes = { axesDim: [2, 4, 6], theta: 100 };
  const [batch, heads, headDim, tokens] = [3, 5, 12, 7];
  const ids = uniform(tokens * 3, 12, -50, 50);
  const offset = 6;
  const rowStride = 64; // wider than heads * headDim = 60: gaps between rows stay untouched
  const size = offset + (batch * tokens - 1) * rowStride + heads * headDim + 10;
  const data = randn(size, 13);
  const x = ctx.pool.upload(data, [size]);
  const table = ropeTable(ctx, ids, [tokens, 3], axes);
  const view = { tensor: x, offset, rowStride };
  const op = rope(ctx, [view], table, { batch, heads, headDim });
  const got = await runAndRead(ctx, op.dispatches, x);
  assertClose(got, ropeRef(data, view, ids, axes, { batch, heads }), TOL, "x");
  assert.deepEqual(got.subarray(0, offset), data.subarray(0, offset), "elements before the view changed");
  op.release();
  table.release();
  x.release();
});

gpuTest(
  "rope single axis (classic 1-D RoPE) with positions up to 1000: float64 angles in the table",
  async (ctx) => {
    const axes: RopeAxes = { axesDim: [64], theta: 10000 };
    const [batch, heads, headDim] = [1, 2, 64];
    const ids = Float32Array.from({ length: 33 }, (_, n) => (n < 32 ? n : 1000.5));
    const data = randn(batch * ids.length * heads * headDim, 14);
    const q = ctx.pool.upload(data, [batch, ids.length, heads * headDim]);
    const table = ropeTable(ctx, ids, [ids.length, 1], axes);
    const view = { tensor: q, offset: 0, rowStride: heads * headDim };
    const op = rope(ctx, [view], table, { batch, heads, headDim });
    const got = await runAndRead(ctx, op.dispatches, q);
    assertClose(got, ropeRef(data, view, ids, axes, { batch, heads }), TOL, "q");
    op.release();
    table.release();
    q.release();
  },
);

gpuTest(
  "rope over more pairs than one grid dimension holds: a Wan video grid of 66,780 tokens x 64 pairs",
  async (ctx) => {
    // Wan2.1's split of a 128 head over (frame, row, column); 4.27M pairs need 66,780 workgroups of 64.
    const axes: RopeAxes = { axesDim: [44, 42, 42], theta: 10000 };
    const [frames, rows, cols, headDim] = [21, 60, 53, 128];
    const tokens = frames * rows * cols;
    const ids = new Float32Array(tokens * 3);
    for (let n = 0; n < tokens; n++) {
      ids.set([Math.floor(n / (rows * cols)), Math.floor(n / cols) % rows, n % cols], n * 3);
    }
    const data = randn(tokens * headDim, 15);
    const x = ctx.pool.upload(data, [1, tokens, headDim]);
    const table = ropeTable(ctx, ids, [tokens, 3], axes);
    const view = { tensor: x, offset: 0, rowStride: headDim };
    const op = rope(ctx, [view], table, { batch: 1, heads: 1, headDim });
    assert.ok(op.dispatches[0].workgroups[1] > 1, "the grid did not wrap into a second dimension");
    const got = await runAndRead(ctx, op.dispatches, x);
    assertClose(got, ropeRef(data, view, ids, axes, { batch: 1, heads: 1 }), TOL, "x");
    op.release();
    table.release();
    x.release();
  },
);

gpuTest(
  "rope rejects bad axes, ids and views with the shapes and allowed range, before dispatching",
  (ctx) => {
    const inUse = ctx.pool.stats().buffersInUse;
    const ids = fluxIds(1, 2, 2);
    const isRopeError = (pattern: RegExp) => (e: unknown) =>
      e instanceof KernelError && e.message.startsWith("rope: ") && pattern.test(e.message);
    assert.throws(
      () => ropeTable(ctx, ids, [5, 3], { axesDim: [16, 56, 55], theta: 10000 }),
      isRopeError(/axes_dim \[16, 56, 55\] must be one or more positive even integers/),
    );
    assert.throws(
      () => ropeTable(ctx, ids, [5, 2], FLUX_AXES),
      isRopeError(/ids shape \[5, 2\] must be \[tokens, 3\].*\[16, 56, 56\]/),
    );
    assert.throws(
      () => ropeTable(ctx, ids, [4, 3], FLUX_AXES),
      isRopeError(/ids has 15 values, shape \[4, 3\] needs 12/),
    );
    assert.throws(
      () => ropeTable(ctx, [0, NaN, 0], [1, 3], FLUX_AXES),
      isRopeError(/ids\[1\] = NaN is not a finite position/),
    );
    assert.throws(
      () => ropeTable(ctx, ids, [5, 3], { ...FLUX_AXES, theta: 0 }),
      isRopeError(/theta 0 must be/),
    );
    assert.equal(ctx.pool.stats().buffersInUse, inUse, "a rejected table must not upload anything");

    const table = ropeTable(ctx, ids, [5, 3], FLUX_AXES);
    const qkv = ctx.pool.tensor([2, 5, 3 * 2 * 128]);
    const dims = { batch: 2, heads: 2, headDim: 128 };
    const rowStride = 3 * 2 * 128;
    assert.throws(
      () => rope(ctx, [{ tensor: qkv, offset: 0, rowStride }], table, { ...dims, headDim: 64 }),
      isRopeError(/head dim 64 must equal sum\(axes_dim \[16, 56, 56\]\) = 128/),
    );
    assert.throws(
      () => rope(ctx, [{ tensor: qkv, offset: 2 * 256 + 2, rowStride }], table, dims),
      isRopeError(
        /view 0 \(offset 514, rowStride 768\) of f32 tensor \[2, 5, 768\]: 10 rows of heads\*headDim = 256 reach element 7682; allowed: .* <= 7680/,
      ),
    );
    assert.throws(
      () =>
        rope(
          ctx,
          [{ tensor: qkv, offset: 0, rowStride }, { tensor: qkv, offset: 3, rowStride }],
          table,
          dims,
        ),
      isRopeError(/view 1 .*offset must be a multiple of 2 >= 0 \(pairs are read as vec2\)/),
    );
    assert.throws(
      () => rope(ctx, [{ tensor: qkv, offset: 0, rowStride: 200 }], table, dims),
      isRopeError(/rowStride must be a multiple of 2 >= heads\*headDim = 256/),
    );
    assert.throws(
      () => rope(ctx, [{ tensor: qkv, offset: 0, rowStride }], table, { ...dims, batch: 0 }),
      isRopeError(/batch 0 and heads 2 must be positive integers/),
    );
    table.release();
    qkv.release();
  },
);
