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
  next: { sample: 1, x0: 0, previous: 0, model: -0.25, noise: 0 },
};
/** DDIM-like: x0 from x and eps, clamped, then x' from x0 and eps, plus noise. */
const CLIPPED: SamplerStepCoefficients = {
  x0: { sample: 1.3, model: -0.8, clip: 1.5 },
  next: { sample: 0.2, x0: 0.9, previous: 0, model: 0.4, noise: 0.27 },
};
/** DPM-Solver++ 2M-like: the previous step's x0 enters. */
const MULTISTEP: SamplerStepCoefficients = {
  x0: { sample: 1.1, model: -0.6, clip: null },
  next: { sample: 0.7, x0: 0.5, previous: -0.2, model: 0, noise: 0 },
};

interface Case {
  label: string;
  coefficients: SamplerStepCoefficients;
  guidance?: number;
  /** Channels of m per sample, when more than x's (learned sigma). */
  modelChannels?: number;
}

const CASES: Case[] = [
  { label: "euler, no guidance", coefficients: EULER },
  { label: "euler, g = 0 (unconditional half only)", coefficients: EULER, guidance: 0 },
  { label: "euler, g = 3.5", coefficients: EULER, guidance: 3.5 },
  { label: "clipped x0 and noise, g = 3.5", coefficients: CLIPPED, guidance: 3.5 },
  {
    label: "multistep, learned-sigma m (2C channels), g = 4",
    coefficients: MULTISTEP,
    guidance: 4,
    modelChannels: 2,
  },
  { label: "multistep, learned-sigma m, no guidance", coefficients: MULTISTEP, modelChannels: 2 },
];

// 105 values per tensor (scalar path) and 2 x 4 x 8 x 8 (vec4 path).
const SHAPES = [[3, 1, 7, 5], [2, 4, 8, 8]];

for (const shape of SHAPES) {
  for (const c of CASES) {
    gpuTest(`sampler_step x [${shape}] ${c.label} matches reference, twice (x0 kept)`, async (ctx) => {
      const [batch, channels, ...rest] = shape;
      const size = shape.reduce((a, b) => a * b, 1);
      const guided = c.guidance !== undefined;
      const mShape = [guided ? 2 * batch : batch, channels * (c.modelChannels ?? 1), ...rest];
      const x = randn(size, 1);
      const m = randn(mShape.reduce((a, b) => a * b, 1), 2);
      const z = randn(size, 3);
      const previous = randn(size, 4);
      const [tx, tm, tz, tp] = [
        ctx.pool.upload(x, shape),
        ctx.pool.upload(m, mShape),
        ctx.pool.upload(z, shape),
        ctx.pool.upload(previous, shape),
      ];
      const op = samplerStep(ctx, tx, tm, {
        ...c.coefficients,
        guidance: c.guidance,
        noise: tz,
        previous: tp,
      });
      await ctx.kernels.ready();
      const options = { ...c.coefficients, guidance: c.guidance, noise: z, batch };
      const first = ref.samplerStep(x, m, { ...options, previous });
      const second = ref.samplerStep(first.x, m, { ...options, previous: first.x0 });
      submitDispatches(ctx.gpu, op.dispatches);
      assertClose(await readFloats(ctx.gpu, tx), first.x, TOL, "x after one step");
      assertClose(await readFloats(ctx.gpu, tp), first.x0, TOL, "x0 kept for the next step");
      submitDispatches(ctx.gpu, op.dispatches);
      assertClose(await readFloats(ctx.gpu, tx), second.x, TOL, "x after two steps");
      op.release();
      for (const t of [tx, tm, tz, tp]) t.release();
    });
  }
}

gpuTest(
  "sampler_step without previous or noise never reads them (NaN stand-ins leave x finite)",
  async (ctx) => {
    const shape = [1, 1, 5, 5];
    const x = randn(25, 5);
    const m = randn(25, 6);
    const tx = ctx.pool.upload(x, shape);
    const tm = ctx.pool.upload(m, shape);
    const nan = ctx.pool.upload(new Float32Array(25).fill(NaN), shape);
    const op = samplerStep(ctx, tx, tm, { ...EULER, noise: nan });
    submitDispatches(ctx.gpu, op.dispatches);
    assertClose(await readFloats(ctx.gpu, tx), ref.samplerStep(x, m, { ...EULER, batch: 1 }).x, TOL, "x");
    op.release();
    for (const t of [tx, tm, nan]) t.release();
  },
);

gpuTest("sampler_step rejects bad shapes, buffers and coefficients before allocating", (ctx) => {
  const x = ctx.pool.tensor([2, 4, 3, 3]);
  const m = ctx.pool.tensor([2, 8, 3, 3]);
  const pair = ctx.pool.tensor([4, 4, 3, 3]);
  const narrow = ctx.pool.tensor([2, 2, 3, 3]);
  const before = ctx.pool.stats().buffersInUse;
  const rejects = (run: () => unknown, pattern: RegExp) =>
    assert.throws(
      run,
      (e) => e instanceof KernelError && e.message.startsWith("sampler_step: ") && pattern.test(e.message),
    );
  rejects(() => samplerStep(ctx, x, narrow, EULER), /m must be \[B = 2, >= 4 channels, 3, 3\]/);
  rejects(
    () => samplerStep(ctx, x, m, { ...EULER, guidance: 2 }),
    /m must be \[2B = 4, >= 4 channels, 3, 3\] \(cond, then uncond\)/,
  );
  rejects(
    () => samplerStep(ctx, x, pair, { ...EULER, next: { ...EULER.next, sample: NaN } }),
    /next.sample NaN must be finite/,
  );
  rejects(() => samplerStep(ctx, x, m, CLIPPED), /next.noise != 0 needs noise/);
  rejects(() => samplerStep(ctx, x, m, MULTISTEP), /next.previous != 0 needs the previous x0/);
  rejects(() => samplerStep(ctx, x, m, { ...EULER, previous: x }), /previous shares x's buffer/);
  assert.equal(ctx.pool.stats().buffersInUse, before, "a rejected step must not allocate");
  for (const t of [x, m, pair, narrow]) t.release();
});
