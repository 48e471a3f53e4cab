import assert from "node:assert/strict";
import { disposeDispatches, KernelError, submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { embeddingLookup, uploadLabels } from "../../src/ops/embedding_lookup.ts";
import { timestepEmbedding, type TimestepEmbeddingOptions } from "../../src/ops/timestep_embedding.ts";
import { embeddingLookup as embeddingLookupRef } from "../../src/ref/embedding_lookup.ts";
import { timestepEmbedding as timestepEmbeddingRef } from "../../src/ref/timestep_embedding.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";
import { encodeHalf } from "../support/half.ts";

// The kernel's argument t*f carries two f32 roundings (the float64 frequency f rounded to f32, then the
// product), |d arg| <= 2 * 2^-24 * |arg| = 1.2e-4 at |arg| = 1000 rad; the range reduction to [-pi, pi] is exact
// to ~1e-8 and sin/cos there add ~1e-6 at most, so the float64 reference is met within 2e-4 absolute.
const LARGE_ARG_TOL = { atol: 2e-4, rtol: 0 };
// |arg| <= 1: the same bound gives ~1.2e-7, plus the sin/cos error.
const SMALL_ARG_TOL = { atol: 1e-6, rtol: 0 };

const EMBEDDED_DIT: TimestepEmbeddingOptions = {
  dim: 256,
  flipSinToCos: true,
  downscaleFreqShift: 0,
  scale: 1000,
  maxPeriod: 10000,
};

const TIMESTEP_CASES = [
  {
    what: "embedded DiT (t in [0, 1] x 1000, cos first)",
    t: [0, 0.0137, 0.5, 0.98765, 1],
    options: EMBEDDED_DIT,
    tol: LARGE_ARG_TOL,
  },
  {
    what: "diffusers defaults, odd dim 33 (sin first, shift 1, zero last column), integer steps",
    t: [0, 1, 17.5, 999],
    options: { dim: 33, flipSinToCos: false, downscaleFreqShift: 1, scale: 1, maxPeriod: 10000 },
    tol: LARGE_ARG_TOL,
  },
  {
    what: "small arguments, max_period 100",
    t: [0.25, 0.5, 1],
    options: { dim: 64, flipSinToCos: true, downscaleFreqShift: 0, scale: 1, maxPeriod: 100 },
    tol: SMALL_ARG_TOL,
  },
];

for (const c of TIMESTEP_CASES) {
  gpuTest(`timestep_embedding ${c.what} matches the float64 reference`, async (ctx) => {
    const t = ctx.pool.upload(Float32Array.from(c.t), [c.t.length]);
    const op = timestepEmbedding(ctx, t, c.options);
    const got = await runAndRead(ctx, op.dispatches, op.out);
    const want = timestepEmbeddingRef(Float32Array.from(c.t), c.options);
    assertClose(got, want, c.tol, "embedding");
    if (c.options.dim % 2 === 1) {
      for (let b = 0; b < c.t.length; b++) {
        assert.equal(got[(b + 1) * c.options.dim - 1], 0, `pad column of row ${b}`);
      }
    }
    op.release();
    t.release();
  });
}

gpuTest("timestep_embedding rejects bad t, dim and shift before allocating or dispatching", (ctx) => {
  const inUse = ctx.pool.stats().buffersInUse;
  const t = ctx.pool.tensor([2, 1]);
  const t1 = t.view([2]);
  const isError = (pattern: RegExp) => (e: unknown) =>
    e instanceof KernelError && e.message.startsWith("timestep_embedding: ") && pattern.test(e.message);
  assert.throws(
    () => timestepEmbedding(ctx, t, EMBEDDED_DIT),
    isError(/t is f32 \[2, 1\], expected f32 \[batch\]/),
  );
  assert.throws(
    () => timestepEmbedding(ctx, t1, { ...EMBEDDED_DIT, dim: 1 }),
    isError(/dim 1 must be an integer >= 2/),
  );
  assert.throws(
    () => timestepEmbedding(ctx, t1, { ...EMBEDDED_DIT, dim: 3, downscaleFreqShift: 1 }),
    isError(/downscale_freq_shift 1 must be below half the dim \(1\)/),
  );
  assert.throws(
    () => timestepEmbedding(ctx, t1, { ...EMBEDDED_DIT, maxPeriod: -1 }),
    isError(/max_period -1 must be finite and > 0/),
  );
  assert.equal(ctx.pool.stats().buffersInUse, inUse + 1, "only the test's own t is in use");
  t.release();
});

const CLASSES = 11; // 10 digits + the null class of classifier-free guidance

for (const dtype of ["f16", "bf16"] as const) {
  gpuTest(`embedding_lookup gathers rows of a ${dtype} table as stored (odd channels)`, async (ctx) => {
    const channels = 37;
    const { bytes, rounded } = encodeHalf(randn(CLASSES * channels, 24), dtype);
    const table = ctx.pool.uploadBytes(bytes, [CLASSES, channels], dtype);
    const labels = uploadLabels(ctx, [9, 0, 10], CLASSES);
    const out = ctx.pool.tensor([3, channels]);
    const dispatch = embeddingLookup(ctx, table, labels, out, { accumulate: false });
    const got = await runAndRead(ctx, [dispatch], out);
    // Widening a half to f32 is exact.
    assertClose(got, embeddingLookupRef(rounded, channels, [9, 0, 10]), { atol: 0, rtol: 0 }, "rows");
    disposeDispatches([dispatch]);
    for (const t of [table, labels, out]) t.release();
  });
}

gpuTest("embedding_lookup gathers rows for an odd channel count (37)", async (ctx) => {
  const channels = 37;
  const tableData = randn(CLASSES * channels, 21);
  const table = ctx.pool.upload(tableData, [CLASSES, channels]);
  const labelValues = [7, 10, 0];
  const labels = uploadLabels(ctx, labelValues, CLASSES);
  const out = ctx.pool.tensor([labelValues.length, channels]);
  const dispatch = embeddingLookup(ctx, table, labels, out, { accumulate: false });
  const got = await runAndRead(ctx, [dispatch], out);
  // A gather copies bits: exact.
  assertClose(got, embeddingLookupRef(tableData, channels, labelValues), { atol: 0, rtol: 0 }, "rows");
  disposeDispatches([dispatch]);
  for (const x of [table, labels, out]) x.release();
});

gpuTest(
  "embedding_lookup accumulates onto t_emb (c = t_emb + y_emb) at the embedded DiT shape",
  async (ctx) => {
    const channels = 128;
    const tableData = randn(CLASSES * channels, 22);
    const tEmb = randn(2 * channels, 23);
    const table = ctx.pool.upload(tableData, [CLASSES, channels]);
    const labels = uploadLabels(ctx, [3, CLASSES - 1], CLASSES);
    const out = ctx.pool.upload(tEmb, [2, channels]);
    const dispatch = embeddingLookup(ctx, table, labels, out, { accumulate: true });
    const got = await runAndRead(ctx, [dispatch], out);
    // One f32 add per element, rounded the same way by the reference's Math.fround: exact.
    assertClose(
      got,
      embeddingLookupRef(tableData, channels, [3, CLASSES - 1], tEmb),
      { atol: 0, rtol: 0 },
      "c",
    );
    disposeDispatches([dispatch]);
    for (const x of [table, labels, out]) x.release();
  },
);

gpuTest("embedding_lookup clamps labels that bypassed uploadLabels to the last row", async (ctx) => {
  const channels = 8;
  const tableData = randn(CLASSES * channels, 24);
  const table = ctx.pool.upload(tableData, [CLASSES, channels]);
  const labels = ctx.pool.upload(Uint32Array.from([3, 4_000_000_000, CLASSES]), [3]);
  const out = ctx.pool.tensor([3, channels]);
  const dispatch = embeddingLookup(ctx, table, labels, out, { accumulate: false });
  submitDispatches(ctx.gpu, [dispatch]);
  const got = await readFloats(ctx.gpu, out);
  assertClose(got, embeddingLookupRef(tableData, channels, [3, CLASSES - 1, CLASSES - 1]), {
    atol: 0,
    rtol: 0,
  }, "rows");
  disposeDispatches([dispatch]);
  for (const x of [table, labels, out]) x.release();
});

gpuTest(
  "embedding_lookup rejects out-of-range labels and mismatched shapes, naming the allowed range",
  (ctx) => {
    const inUse = ctx.pool.stats().buffersInUse;
    const isError = (pattern: RegExp) => (e: unknown) =>
      e instanceof KernelError && e.message.startsWith("embedding_lookup: ") && pattern.test(e.message);
    for (const [bad, shown] of [[-1, "-1"], [CLASSES, "11"], [2.5, "2.5"], [NaN, "NaN"]] as const) {
      assert.throws(
        () => uploadLabels(ctx, [1, bad], CLASSES),
        isError(
          new RegExp(
            `labels\\[1\\] = ${shown} is outside the table's classes 0\\.\\.10 \\(labels \\[2\\]\\)`,
          ),
        ),
      );
    }
    assert.throws(() => uploadLabels(ctx, [], CLASSES), isError(/labels is empty/));
    assert.equal(ctx.pool.stats().buffersInUse, inUse, "rejected labels must not be uploaded");

    const table = ctx.pool.tensor([CLASSES, 16]);
    const labels = uploadLabels(ctx, [1, 2], CLASSES);
    const wrongOut = ctx.pool.tensor([2, 15]);
    const floatLabels = ctx.pool.tensor([2]);
    assert.throws(
      () => embeddingLookup(ctx, table, labels, wrongOut, { accumulate: false }),
      isError(/table f32 \[11, 16\], labels u32 \[2\], out f32 \[2, 15\]: out must be f32 \[2, 16\]/),
    );
    assert.throws(
      () => embeddingLookup(ctx, table, floatLabels, wrongOut, { accumulate: false }),
      isError(/labels f32 \[2\].*labels must be u32 \[batch\]/),
    );
    assert.throws(
      () => embeddingLookup(ctx, table.view([CLASSES * 16]), labels, wrongOut, { accumulate: false }),
      isError(/table must be f32, f16 or bf16 \[classes, channels\]/),
    );
    for (const x of [table, labels, wrongOut, floatLabels]) x.release();
  },
);
