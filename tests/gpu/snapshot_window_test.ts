import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { KernelError, submitDispatches } from "../../src/gpu/kernel.ts";
import { readback } from "../../src/gpu/readback.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { gramRows, snapshotWindow } from "../../src/ops/snapshot_window.ts";
import { snapshotCombination, snapshotGram } from "../../src/ref/snapshot_window.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn, rng } from "../support/random.ts";

/** Seeded values over a wide range: normal noise times 2^(-20..20). */
function wide(size: number, seed: number): Float32Array {
  const next = rng(seed + 7);
  return randn(size, seed).map((v) => v * 2 ** Math.round(40 * next() - 20));
}

async function gram(ctx: GpuContext, shape: number[], slots: Float32Array[], newest: number) {
  const source = ctx.pool.tensor(shape);
  const out = ctx.pool.tensor(shape);
  const window = snapshotWindow(ctx, source, slots.length, out, "add");
  const ring = Float32Array.from(slots.flatMap((s) => [...s]));
  ctx.pool.write(window.ring, ring);
  await ctx.kernels.ready();
  submitDispatches(ctx.gpu, window.gram(newest));
  const got = gramRows(await readback(ctx.gpu, window.partials) as Uint32Array, window.items, window.slots);
  const dims = { slots: slots.length, items: window.items, size: window.size };
  const result = { got, want: snapshotGram(ring, dims, newest), dims, ring };
  window.release();
  source.release();
  out.release();
  return result;
}

/**
 * The kernel's bound (shaders/snapshot_window.wgsl): 2^-45 max|a| max|c| per value, the maxima over the
 * value's 4096-value chunk, plus the f64 adds (1e-15 of sum |a c|). An f32 sum would be off by ~1e-7 of
 * sum |a c|, which for the cancelling slot is most of the dot.
 */
function gramBound(ring: Float32Array, dims: { slots: number; items: number; size: number }, newest: number) {
  const at = (slot: number, item: number, e: number) =>
    Math.abs(ring[(slot * dims.items + item) * dims.size + e]);
  const out = new Float64Array(dims.items * dims.slots);
  for (let item = 0; item < dims.items; item++) {
    for (let slot = 0; slot < dims.slots; slot++) {
      let [bound, sum] = [0, 0];
      for (let start = 0; start < dims.size; start += 4096) {
        const end = Math.min(dims.size, start + 4096);
        let [maxA, maxC] = [0, 0];
        for (let e = start; e < end; e++) {
          [maxA, maxC] = [Math.max(maxA, at(newest, item, e)), Math.max(maxC, at(slot, item, e))];
          sum += at(newest, item, e) * at(slot, item, e);
        }
        bound += (end - start) * 2 ** -45 * maxA * maxC;
      }
      out[item * dims.slots + slot] = bound + 1e-15 * sum;
    }
  }
  return out;
}

const CASES = [
  { shape: [2, 3, 7], slots: 3, newest: 1 }, // two items of 21 values, one chunk each
  { shape: [2, 9000], slots: 4, newest: 3 }, // three chunks per item, the last ragged
  { shape: [5000], slots: 2, newest: 0 }, // a vector: one item
];

for (const c of CASES) {
  gpuTest(`snapshot_window gram ${c.shape} x ${c.slots} slots is the f64 dot product`, async (ctx) => {
    const size = c.shape.reduce((a, b) => a * b);
    const slots = Array.from({ length: c.slots }, (_, j) => wide(size, 10 * j + 1));
    // A slot that cancels the newest but for 1e-6 of it: its dot is -|a|^2 (1 - 1e-6), which an f32 sum
    // could not resolve.
    const noise = randn(size, 99);
    slots[(c.newest + 1) % c.slots] = slots[c.newest].map((v, i) => -v * (1 + 1e-6 * noise[i]));
    const { got, want, dims, ring } = await gram(ctx, c.shape, slots, c.newest);
    const bound = gramBound(ring, dims, c.newest);
    const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i]) / bound[i]));
    assert.ok(worst <= 1, `max |gpu - f64| is ${worst} of the kernel's bound`);
    // The cancelling slot's dot, -|a|^2 (1 + 1e-6 noise): resolved far below the 1e-6 part.
    const cancelling = (c.newest + 1) % c.slots;
    const [g, w] = [got[cancelling], want[cancelling]];
    assert.ok(Math.abs(g - w) < 1e-11 * Math.abs(w), `cancelling slot: ${g} vs ${w}`);
  });
}

gpuTest(
  "snapshot_window gram: zeros give 0; inf or NaN in a slot gives NaN for that slot only",
  async (ctx) => {
    const size = 5000;
    const a = randn(size, 3);
    const withInf = randn(size, 4);
    withInf[4500] = Infinity;
    const withNaN = randn(size, 5);
    withNaN[10] = NaN;
    const { got } = await gram(ctx, [size], [a, new Float32Array(size), withInf, withNaN], 0);
    assert.equal(got[1], 0);
    assert.ok(Number.isNaN(got[2]) && Number.isNaN(got[3]), `${got}`);
    assert.ok(Number.isFinite(got[0]) && got[0] > 0, `${got[0]}`);
  },
);

// f32 sums of up to 4 weighted terms of unit-scale values.
const TOL = { atol: 1e-5, rtol: 1e-5 };

for (const mode of ["add", "replace"] as const) {
  gpuTest(`snapshot_window combine (${mode}) per item, skipping weight-0 slots`, async (ctx) => {
    const shape = [3, 5, 7];
    const size = 3 * 5 * 7;
    const slots = 4;
    const source = ctx.pool.tensor(shape);
    const base = randn(size, 6);
    const out = ctx.pool.upload(base, shape);
    const window = snapshotWindow(ctx, source, slots, out, mode);
    const ring = randn(slots * size, 7);
    // Slot 2 is unset for item 1 (NaN): its weight is 0 there.
    ring.fill(NaN, 2 * size + 35, 2 * size + 70);
    ctx.pool.write(window.ring, ring);
    const weights = Float64Array.from([0.5, -2, 1.25, 0, 3, 0.1, 0, -1, 0, 0, 0, 1]);
    const got = await runAndRead(ctx, window.combine(weights), out);
    const dims = { slots, items: 3, size: 35 };
    const want = snapshotCombination(ring, dims, weights, mode === "add" ? base : null);
    assertClose(got, want, TOL, mode);
    assert.throws(() => window.combine(new Float64Array(3)), KernelError);
    assert.throws(() => window.gram(slots), /slot 4 is outside 0..3/);
    assert.equal(window.memoryBytes(), (slots * size + 3 * slots + 3 * slots * 4) * 4);
    window.release();
    source.release();
    out.release();
  });
}

gpuTest("snapshot_window load copies the source into a slot", async (ctx) => {
  const source = ctx.pool.upload(randn(12, 8), [2, 6]);
  const out = ctx.pool.tensor([2, 6]);
  const window = snapshotWindow(ctx, source, 3, out, "replace");
  const recorder = new StepRecorder(ctx.gpu);
  recorder.encode([window.load(2)]);
  const ring = await recorder.read(window.ring);
  assert.deepEqual([...ring.slice(24, 36)], [...randn(12, 8)]);
  window.release();
  source.release();
  out.release();
});
