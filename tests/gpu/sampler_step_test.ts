import assert from "node:assert/strict";
import { KernelError, submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { samplerStep, type SamplerStepCoefficients } from "../../src/ops/sampler_step.ts";
import * as ref from "../../src/ref/sampler_step.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// Unit-normal inputs (|.| < 6): with g = 3.5 the largest intermediate is |g (m_c - m_u)| < 42 and the
// coefficients are <= 2 in size; the kernel rounds ~10 times, each by <= 2^-24 of what it rounds (<= 1e-4
// in all), the float64 reference once. Swapped halves, a wrong g or a dropped term are off by ~0.1 or more.
const TOL = { atol: 1e-4, rtol: 0 };

const EULER: SamplerStepCoefficients = {
  x0: { sample: 0, model: 0, clip: null },
  next: { sample: 1, x0: 0, history: [], model: -0.25, noise: 0 },
};
/** DDIM-like: x0 from x and eps, clamped, then x' from x0 and eps, plus noise. */
const CLIPPED: SamplerStepCoefficients = {
  x0: { sample: 1.3, model: -0.8, clip: 1.5 },
  next: { sample: 0.2, x0: 0.9, history: [], model: 0.4, noise: 0.27 },
};
/** DPM-Solver++ 2M-like: the previous step's x0 enters. */
const MULTISTEP: SamplerStepCoefficients = {
  x0: { sample: 1.1, model: -0.6, clip: null },
  next: { sample: 0.7, x0: 0.5, history: [-0.2], model: 0, noise: 0 },
};
/** Its first step, with no x0 before it. */
const MULTISTEP_FIRST = { ...MULTISTEP, next: { ...MULTISTEP.next, history: [] } };

/**
 * UniPC-like runs over a ring of `slots` x0s: the corrector from the second step on, weighing the last
 * sample, this x0 and the x0s of up to `slots` steps before, and a predictor over up to slots - 1 of them.
 * Weights are distinct so that a slot read in the wrong order moves x.
 */
function uniPcLike(steps: number, slots: number): SamplerStepCoefficients[] {
  return Array.from({ length: steps }, (_, i) => {
    const back = (n: number, base: number) =>
      Array.from({ length: Math.min(i, n) }, (_, k) => base - 0.15 * k);
    return {
      x0: { sample: 1, model: -0.9 + 0.1 * i, clip: null },
      ...(i > 0 ? { corrector: { last: 0.8, x0: 0.3, history: back(slots, -0.35) } } : {}),
      next: { sample: 0.6, x0: 0.7, history: back(slots - 1, 0.25), model: 0, noise: 0 },
    };
  });
}

interface Case {
  label: string;
  /** One set per step, run in order as one request's dispatches. */
  steps: SamplerStepCoefficients[];
  guidance?: number;
  /** Channels of m per sample, when more than x's (learned sigma). */
  modelChannels?: number;
  /** Ring slots; 0 runs without a ring. */
  slots: number;
  last?: boolean;
}

const CASES: Case[] = [
  { label: "euler, no guidance", steps: [EULER, EULER], slots: 0 },
  { label: "euler, g = 0 (unconditional half only)", steps: [EULER], guidance: 0, slots: 0 },
  { label: "euler, g = 3.5", steps: [EULER], guidance: 3.5, slots: 0 },
  { label: "clipped x0 and noise, g = 3.5", steps: [CLIPPED, CLIPPED], guidance: 3.5, slots: 0 },
  {
    label: "multistep, learned-sigma m (2C channels), g = 4",
    steps: [MULTISTEP_FIRST, MULTISTEP, MULTISTEP],
    guidance: 4,
    modelChannels: 2,
    slots: 1,
  },
  { label: "multistep, learned-sigma m", steps: [MULTISTEP_FIRST, MULTISTEP], modelChannels: 2, slots: 1 },
  { label: "UniPC order 2, g = 5", steps: uniPcLike(5, 2), guidance: 5, slots: 2, last: true },
  { label: "UniPC order 3", steps: uniPcLike(6, 3), slots: 3, last: true },
  { label: "UniPC order 1, learned-sigma m", steps: uniPcLike(3, 1), modelChannels: 2, slots: 1, last: true },
];

// 105 values per tensor (scalar path) and 2 x 4 x 8 x 8 (vec4 path).
const SHAPES = [[3, 1, 7, 5], [2, 4, 8, 8]];

for (const shape of SHAPES) {
  for (const c of CASES) {
    gpuTest(`sampler_step x [${shape}] ${c.label} matches reference step by step`, async (ctx) => {
      const [batch, channels, ...rest] = shape;
      const size = shape.reduce((a, b) => a * b, 1);
      const guided = c.guidance !== undefined;
      const mShape = [guided ? 2 * batch : batch, channels * (c.modelChannels ?? 1), ...rest];
      const x = randn(size, 1);
      const m = randn(mShape.reduce((a, b) => a * b, 1), 2);
      const z = randn(size, 3);
      const [tx, tm, tz] = [ctx.pool.upload(x, shape), ctx.pool.upload(m, mShape), ctx.pool.upload(z, shape)];
      // NaN where nothing was written yet: a slot or last read before it is written poisons x.
      const ring = c.slots > 0
        ? ctx.pool.upload(new Float32Array(c.slots * size).fill(NaN), [c.slots, ...shape])
        : undefined;
      const last = c.last ? ctx.pool.upload(new Float32Array(size).fill(NaN), shape) : undefined;
      const ops = c.steps.map((step, i) =>
        samplerStep(ctx, tx, tm, {
          ...step,
          guidance: c.guidance,
          noise: tz,
          history: ring && { ring, step: i },
          last,
        })
      );
      await ctx.kernels.ready();
      let want: ReturnType<typeof ref.samplerStep> = {
        x,
        x0: new Float32Array(),
        sample: new Float32Array(),
      };
      const history: Float32Array[] = [];
      for (const [i, op] of ops.entries()) {
        want = ref.samplerStep(want.x, m, {
          ...c.steps[i],
          guidance: c.guidance,
          noise: z,
          history,
          last: want.sample,
          batch,
        });
        history.unshift(want.x0);
        submitDispatches(ctx.gpu, op.dispatches);
        assertClose(await readFloats(ctx.gpu, tx), want.x, TOL, `x after step ${i}`);
      }
      if (last) assertClose(await readFloats(ctx.gpu, last), want.sample, TOL, "last: the last step's s");
      if (ring) {
        const slots = await readFloats(ctx.gpu, ring);
        // Step j's x0 sits in slot j % slots.
        for (let j = Math.max(0, ops.length - c.slots); j < ops.length; j++) {
          const slot = slots.subarray((j % c.slots) * size, (j % c.slots + 1) * size);
          assertClose(slot, history[ops.length - 1 - j], TOL, `ring slot ${j % c.slots} (x0 of step ${j})`);
        }
      }
      for (const op of ops) op.release();
      for (const t of [tx, tm, tz, ring, last]) t?.release();
    });
  }
}

gpuTest(
  "sampler_step without noise, history or last never reads them (NaN stand-ins leave x finite)",
  async (ctx) => {
    const shape = [1, 1, 5, 5];
    const x = randn(25, 5);
    const m = randn(25, 6);
    const tx = ctx.pool.upload(x, shape);
    const tm = ctx.pool.upload(m, shape);
    const nan = ctx.pool.upload(new Float32Array(25).fill(NaN), shape);
    const ring = ctx.pool.upload(new Float32Array(50).fill(NaN), [2, ...shape]);
    const last = ctx.pool.upload(new Float32Array(25).fill(NaN), shape);
    // History weights of 0 and a step with no corrector: the ring and last are written, never read.
    const zeros = { ...EULER, next: { ...EULER.next, history: [0, 0] } };
    const op = samplerStep(ctx, tx, tm, { ...zeros, noise: nan, history: { ring, step: 3 }, last });
    submitDispatches(ctx.gpu, op.dispatches);
    assertClose(await readFloats(ctx.gpu, tx), ref.samplerStep(x, m, { ...EULER, batch: 1 }).x, TOL, "x");
    assertClose(await readFloats(ctx.gpu, last), x, { atol: 0, rtol: 0 }, "last = x (no corrector)");
    op.release();
    for (const t of [tx, tm, nan, ring, last]) t.release();
  },
);

gpuTest("sampler_step rejects bad shapes, buffers and coefficients before allocating", (ctx) => {
  const x = ctx.pool.tensor([2, 4, 3, 3]);
  const m = ctx.pool.tensor([2, 8, 3, 3]);
  const pair = ctx.pool.tensor([4, 4, 3, 3]);
  const narrow = ctx.pool.tensor([2, 2, 3, 3]);
  const ring = ctx.pool.tensor([2, 2, 4, 3, 3]);
  const single = ctx.pool.tensor([1, 2, 4, 3, 3]);
  const before = ctx.pool.stats().buffersInUse;
  const rejects = (run: () => unknown, pattern: RegExp) =>
    assert.throws(
      run,
      (e) => e instanceof KernelError && e.message.startsWith("sampler_step: ") && pattern.test(e.message),
    );
  const [first, second] = uniPcLike(3, 2).slice(1);
  rejects(() => samplerStep(ctx, x, narrow, EULER), /m must be \[B = 2, >= 4 channels, 3, 3\]/);
  rejects(
    () => samplerStep(ctx, x, m, { ...EULER, guidance: 2 }),
    /m must be \[2B = 4, >= 4 channels, 3, 3\] \(cond, then uncond\)/,
  );
  rejects(
    () => samplerStep(ctx, x, pair, { ...EULER, next: { ...EULER.next, sample: NaN } }),
    /next.sample NaN must be finite/,
  );
  rejects(
    () => samplerStep(ctx, x, m, { ...second, history: { ring, step: 2 }, last: narrow }),
    /last \[2, 2, 3, 3\] must have the shape of x/,
  );
  rejects(
    () => samplerStep(ctx, x, m, { ...first, corrector: { ...first.corrector!, history: [Infinity] } }),
    /corrector.history\[0\] Infinity must be finite/,
  );
  rejects(() => samplerStep(ctx, x, m, CLIPPED), /next.noise != 0 needs noise/);
  rejects(() => samplerStep(ctx, x, m, MULTISTEP), /history weights != 0 need the history ring/);
  rejects(() => samplerStep(ctx, x, m, { ...first, history: { ring, step: 1 } }), /a corrector needs last/);
  rejects(
    () => samplerStep(ctx, x, m, { ...second, history: { ring: single, step: 2 } }),
    /history ring \[1, 2, 4, 3, 3\] must be \[slots, 2, 4, 3, 3\] with 2 <= slots <= 4/,
  );
  rejects(() => samplerStep(ctx, x, m, { ...MULTISTEP, history: { ring, step: -1 } }), /step -1 must be/);
  rejects(() => samplerStep(ctx, x, m, { ...first, history: { ring, step: 1 }, last: x }), /last shares x's/);
  rejects(
    () =>
      samplerStep(ctx, x, m, { ...first, history: { ring: single, step: 1 }, last: single.view(x.shape) }),
    /last shares ring's buffer/,
  );
  assert.equal(ctx.pool.stats().buffersInUse, before, "a rejected step must not allocate");
  for (const t of [x, m, pair, narrow, ring, single]) t.release();
});
