// DMD on the GPU: the calibrator alone over cache-dit's scripted runs (tools/dmd_fixtures.py), in both of its
// modes; then inside DBCache and DBPrune on the fake block list, on the readback path (calibratorNeedsHost),
// for both cache types, against DmdReference fed what the strategy stores; and DBCache + DMD's conformance.
import assert from "node:assert/strict";
import { calibratorNeedsHost } from "../../src/cache/calibrators/calibrator.ts";
import { Dmd } from "../../src/cache/calibrators/dmd.ts";
import { createStrategy } from "../../src/cache/create.ts";
import { resolveCacheOptions } from "../../src/cache/options.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { DmdReference, type DmdSettings } from "../../src/ref/dmd.ts";
import { assertClose } from "../support/assert_close.ts";
import { readDmdFixture } from "../support/dmd_fixture.ts";
import { fakeBlocks } from "../support/fake_blocks.ts";
import { gpuTest } from "../support/gpu.ts";
import { randn } from "../support/random.ts";
import { conformanceSuite, drive, SHAPE, SIZE, type StepScript } from "./conformance.ts";

// The GPU holds the snapshots in f32 and its Gram matrix is exact (tests/gpu/snapshot_window_test.ts), so
// the fit is the reference's to ~1e-13; what differs is the forecast's f32 weights and the f32 sum of up to
// 6 weighted snapshots: a few ulp of sum |c_j y_j| (weights up to ~10 on unit values; at most 2e-6 seen
// here). A wrong fit, horizon or fallback is off by > 0.05 (a Taylor forecast or integer horizons fail).
const TOL = { atol: 3e-5, rtol: 1e-5 };

for (const mode of ["add", "replace"] as const) {
  gpuTest(`DMD GPU (${mode}) matches the reference and cache-dit over the fixture's runs`, async (ctx) => {
    const { shape, runs } = await readDmdFixture();
    const size = shape.reduce((a, b) => a * b, 1);
    for (const { settings, steps } of runs) {
      const source = ctx.pool.tensor(shape);
      const target = ctx.pool.tensor(shape);
      const dmd = new Dmd(ctx, { source, target, mode }, settings);
      const reference = new DmdReference(shape[0], settings);
      const recorder = new StepRecorder(ctx.gpu);
      assert.equal(dmd.ready, false);
      for (const s of steps) {
        if (s.computed) {
          ctx.pool.write(source, s.y);
          dmd.update(s.step, recorder);
          reference.update(s.step, s.y);
          continue;
        }
        const base = randn(size, 300 + s.step);
        ctx.pool.write(target, base);
        await dmd.settled();
        dmd.approximate(s.step, recorder);
        const plus = (p: ArrayLike<number>) =>
          mode === "add" ? base.map((v, i) => v + p[i]) : Float64Array.from(p);
        const got = await recorder.read(target);
        const what = `history ${settings.history}, step ${s.step} (${s.path})`;
        assertClose(got, plus(reference.approximate(s.step)), TOL, what);
        assertClose(got, plus(s.expected), TOL, `${what} against cache-dit`);
      }
      const slots = Math.max(settings.history, settings.nDerivatives + 1);
      const chunks = 1;
      assert.equal(dmd.memoryBytes(), (slots * size + shape[0] * slots * (1 + 4 * chunks)) * 4);
      assert.throws(() => dmd.gpuSlots(), /run it on the readback path/);
      dmd.release();
      source.release();
      target.release();
    }
  });
}

gpuTest("DMD: a cached step before the host has the last update's Gram row is an error", async (ctx) => {
  const source = ctx.pool.tensor([6]);
  const target = ctx.pool.tensor([6]);
  const dmd = new Dmd(ctx, { source, target, mode: "replace" }, {
    history: 6,
    rank: 0,
    ridge: 1e-8,
    nDerivatives: 1,
  });
  const recorder = new StepRecorder(ctx.gpu);
  for (const step of [0, 1, 2, 3]) {
    ctx.pool.write(source, randn(6, step));
    dmd.update(step, recorder);
  }
  // Nothing has yielded to the event loop since the last update, so its readback cannot have resolved.
  assert.throws(() => dmd.approximate(4, recorder), /Gram row of step \d's snapshot is not on the host yet/);
  await dmd.settled();
  dmd.approximate(4, recorder);
  recorder.submit();
  dmd.release();
  source.release();
  target.release();
});

const BLOCKS = 4;
/** "C" computes, "." caches: Taylor fallbacks (1 to 3 snapshots), DMD on 4 and 5, a tail cut by spacing 4. */
const SCHEDULE = "C.C.C.C.C...C.C";
const SETTINGS: DmdSettings = { history: 6, rank: 0, ridge: 1e-8, nDerivatives: 1 };
const add = (a: ArrayLike<number>, b: ArrayLike<number>) => Float32Array.from(a, (v, i) => v + b[i]);
const sub = (a: ArrayLike<number>, b: ArrayLike<number>) => Float32Array.from(a, (v, i) => v - b[i]);

/** Per batch item a sum of exponentials over the step (what DMD fits), in SIZE values: [2, 5, 12]. */
function trajectory(seed: number, step: number, scale = 1): Float32Array {
  const perItem = SIZE / 2;
  const poles = [[0.9, -0.7, 0.95, 0.5], [0.85, -0.6, 0.97, 0.8]];
  const mixes = Array.from({ length: 8 }, (_, m) => randn(perItem, seed + m, scale));
  return Float32Array.from({ length: SIZE }, (_, i) => {
    const item = i < perItem ? 0 : 1;
    const [decay, alternating, modulus, angle] = poles[item];
    const e = i % perItem;
    const mix = (m: number) => mixes[4 * item + m][e];
    return mix(0) * decay ** step + mix(1) * alternating ** step +
      modulus ** step * (mix(2) * Math.cos(angle * step) + mix(3) * Math.sin(angle * step));
  });
}

async function run(
  ctx: GpuContext,
  options: Record<string, unknown>,
  scripts: StepScript[],
) {
  const fake = fakeBlocks(ctx, BLOCKS, SHAPE);
  const resolved = resolveCacheOptions(options, {
    blocks: BLOCKS,
    steps: scripts.length,
    channels: SHAPE[2],
  });
  assert.ok("calibrator" in resolved && calibratorNeedsHost(resolved.calibrator));
  const s = createStrategy(ctx, resolved, "readback");
  const result = await drive(ctx, s, fake, scripts);
  const stats = s.stats();
  s.release();
  fake.release();
  return { ...result, stats };
}

/**
 * The expected outputs when `span` is skipped on the schedule's "." steps, F = block 0 and the blocks after
 * the span run every step: the f32 sums the fake blocks make, with DmdReference fed the span's residual (or
 * the state after it) on computed steps.
 */
function expectedOutputs(scripts: StepScript[], span: number[], cacheType: string): Float32Array[] {
  const dmd = new DmdReference(SHAPE[0], SETTINGS);
  return scripts.map((s, step) => {
    const input = add(s.hidden, s.residuals[0]);
    let after: Float32Array;
    if (SCHEDULE[step] === "C") {
      after = span.reduce((x, i) => add(x, s.residuals[i]), input);
      dmd.update(step, cacheType === "residual" ? sub(after, input) : after);
    } else {
      const predicted = dmd.approximate(step);
      after = cacheType === "residual" ? add(input, predicted) : Float32Array.from(predicted);
    }
    const rest = s.residuals.slice(Math.max(...span) + 1);
    return rest.reduce((x, r) => add(x, r), after);
  });
}

const cachedSteps = [...SCHEDULE].flatMap((c, step) => c === "." ? [step] : []);
const calibrator = (cacheType: string) => ({
  calibrator_type: "dmd",
  enable_calibrator: true,
  calibrator_cache_type: cacheType,
  calibrator_kwargs: { history: SETTINGS.history },
});

for (const cacheType of ["residual", "hidden_states"]) {
  gpuTest(`dbcache F1B1 + DMD (${cacheType}) on the readback path against the reference`, async (ctx) => {
    // The mask computes on "C"; the other steps cache (every diff is far below 10). The hidden state and the
    // span's residuals follow exponentials, so the states DMD fits are what it is made for.
    const scripts = [...SCHEDULE].map((_, step) => ({
      hidden: trajectory(10, step),
      residuals: [0.1, 0.3, 0.3, 0.1].map((scale, i) => trajectory(100 + 10 * i, step, scale)),
    }));
    const options = {
      strategy: "dbcache",
      Fn: 1,
      Bn: 1,
      residual_diff_threshold: 10,
      max_warmup_steps: 0,
      steps_computation_mask: [...SCHEDULE].map((c) => Number(c === "C")),
      ...calibrator(cacheType),
    };
    const expected = expectedOutputs(scripts, [1, 2], cacheType);
    const r = await run(ctx, options, scripts);
    assert.deepEqual(r.stats.cachedSteps, cachedSteps);
    assert.equal(r.stats.strategy, `dbcache F1B1 + DMD (${cacheType}, history 6)`);
    r.outputs.forEach((o, step) => assertClose(o, expected[step], TOL, `step ${step}`));
    // R_F, R_F*, M's input and residual; DMD's 6 slots, its weights and Gram words (2 items x 6 slots).
    assert.equal(r.stats.memoryBytes, (4 * SIZE + 6 * SIZE + 2 * 6 + 2 * 6 * 4) * 4);
  });

  gpuTest(`dbprune F1B2 + DMD (${cacheType}) on the readback path against the reference`, async (ctx) => {
    // Block 1 alone is prunable. Its input stays the same until the next "C" step, where an alternating
    // offset moves it by twice its size (diff ~2 > 0.5): pruned exactly on "." steps. Its input and its
    // residual follow exponentials (the offset is one more, of pole -1 per computed step).
    const offset = randn(SIZE, 3, 4);
    let [base, computed] = [new Float32Array(SIZE), 0];
    const r0 = randn(SIZE, 2, 0.1);
    const scripts = [...SCHEDULE].map((c, step) => {
      const sign = c === "C" ? (-1) ** computed++ : 0;
      if (c === "C") base = add(trajectory(20, step), offset.map((v) => v * sign));
      return {
        hidden: base,
        residuals: [
          r0,
          trajectory(200, step, 0.3),
          ...[0.1, 0.1].map((scale, i) => randn(SIZE, 100 * step + i, scale)),
        ],
      };
    });
    const options = {
      strategy: "dbprune",
      Fn: 1,
      Bn: 2,
      residual_diff_threshold: 0.5,
      max_warmup_steps: 0,
      ...calibrator(cacheType),
    };
    const expected = expectedOutputs(scripts, [1], cacheType);
    const r = await run(ctx, options, scripts);
    assert.deepEqual(r.stats.cachedSteps, cachedSteps);
    assert.equal(r.stats.strategy, `dbprune F1B2 + DMD (${cacheType}, history 6)`);
    r.outputs.forEach((o, step) => assertClose(o, expected[step], TOL, `step ${step}`));
  });
}

conformanceSuite(
  "dbcache F1B0 + DMD",
  (ctx, { threshold, warmup, blocks, steps }) =>
    createStrategy(
      ctx,
      resolveCacheOptions({
        strategy: "dbcache",
        Fn: 1,
        Bn: 0,
        enable_calibrator: true,
        calibrator_type: "dmd",
        residual_diff_threshold: threshold,
        max_warmup_steps: warmup,
      }, { blocks, steps, channels: SHAPE[2] }),
      "readback",
    ),
  { paths: ["readback"] },
);
