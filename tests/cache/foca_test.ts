// FoCa on the GPU: the calibrator alone over cache-dit's scripted run (tools/foca_fixtures.py), in both of
// its modes; then inside DBCache and DBPrune on the fake block list, decided on the host and on the GPU, for
// both cache types, against FoCaReference fed what the strategy stores; and DBCache + FoCa's conformance.
import assert from "node:assert/strict";
import { FoCa } from "../../src/cache/calibrators/foca.ts";
import { DECISION_PATHS, type DecisionPath } from "../../src/cache/decision_path.ts";
import { createStrategy } from "../../src/cache/create.ts";
import { resolveCacheOptions } from "../../src/cache/options.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { FoCaReference } from "../../src/ref/foca.ts";
import { assertClose } from "../support/assert_close.ts";
import { fakeBlocks } from "../support/fake_blocks.ts";
import { readFocaFixture } from "../support/foca_fixture.ts";
import { gpuTest } from "../support/gpu.ts";
import { randn } from "../support/random.ts";
import { conformanceSuite, drive, SHAPE, SIZE, type StepScript } from "./conformance.ts";

// f32 GPU arithmetic against f64 on values up to ~12: four f32 operations per forecast on the recursive
// window, a few ulp of 12 (~1e-6) even after six steps; a wrong weight, slope or window is off by > 0.1.
const TOL = { atol: 1e-5, rtol: 1e-5 };
/** The fixture rounds cache-dit's f64 result to f32 once: the same bound plus half an ulp. */
const FIXTURE_TOL = { atol: 1e-5, rtol: 1.1e-5 };

for (const mode of ["add", "replace"] as const) {
  gpuTest(
    `FoCa GPU (${mode}) matches the reference and cache-dit over the fixture's 28 steps`,
    async (ctx) => {
      const { shape, steps } = await readFocaFixture();
      const size = shape.reduce((a, b) => a * b, 1);
      const source = ctx.pool.tensor(shape);
      const target = ctx.pool.tensor(shape);
      const foca = new FoCa(ctx, { source, target, mode });
      const reference = new FoCaReference();
      const recorder = new StepRecorder(ctx.gpu);
      assert.equal(foca.ready, false);
      for (const s of steps) {
        if (s.computed) {
          ctx.pool.write(source, s.y);
          foca.update(s.step, recorder);
          reference.update(s.step, s.y);
          recorder.submit();
          continue;
        }
        const base = randn(size, 300 + s.step);
        ctx.pool.write(target, base);
        foca.approximate(s.step, recorder);
        const plus = (p: ArrayLike<number>) =>
          mode === "add" ? base.map((v, i) => v + p[i]) : Float64Array.from(p);
        const got = await recorder.read(target);
        assertClose(got, plus(reference.approximate(s.step)), TOL, `step ${s.step}`);
        assertClose(got, plus(s.expected), FIXTURE_TOL, `step ${s.step} against cache-dit`);
      }
      assert.equal(foca.ready, true);
      assert.equal(foca.memoryBytes(), 4 * size * 4, "anchor, its slope, the window's head and its slope");
      foca.release();
      source.release();
      target.release();
    },
  );
}

const BLOCKS = 4;
/** "C" computes, "." caches: the fallback after one update, two computed steps in a row, the clamp at 4. */
const SCHEDULE = "C.CC..C....C";
const add = (a: ArrayLike<number>, b: ArrayLike<number>) => Float32Array.from(a, (v, i) => v + b[i]);
const sub = (a: ArrayLike<number>, b: ArrayLike<number>) => Float32Array.from(a, (v, i) => v - b[i]);

function strategy(ctx: GpuContext, options: Record<string, unknown>, steps: number, path: DecisionPath) {
  const context = { blocks: BLOCKS, steps, channels: SHAPE[2] };
  return createStrategy(ctx, resolveCacheOptions(options, context), path);
}

async function run(
  ctx: GpuContext,
  options: Record<string, unknown>,
  scripts: StepScript[],
  path: DecisionPath,
) {
  const fake = fakeBlocks(ctx, BLOCKS, SHAPE);
  const s = strategy(ctx, options, scripts.length, path);
  const result = await drive(ctx, s, fake, scripts);
  const stats = s.stats();
  s.release();
  fake.release();
  return { ...result, stats };
}

/**
 * The expected outputs when `span` (the span's blocks) is skipped on the schedule's "." steps, F = block 0 and
 * the blocks after the span run every step: the f32 sums the fake blocks make, with FoCaReference fed the
 * span's residual (or the state after it) on computed steps.
 */
function expectedOutputs(scripts: StepScript[], span: number[], cacheType: string): Float32Array[] {
  const foca = new FoCaReference();
  return scripts.map((s, step) => {
    const input = add(s.hidden, s.residuals[0]);
    let after: Float32Array;
    if (SCHEDULE[step] === "C") {
      after = span.reduce((x, i) => add(x, s.residuals[i]), input);
      foca.update(step, cacheType === "residual" ? sub(after, input) : after);
    } else {
      const predicted = foca.approximate(step);
      after = cacheType === "residual" ? add(input, predicted) : Float32Array.from(predicted);
    }
    const rest = s.residuals.slice(Math.max(...span) + 1);
    return rest.reduce((x, r) => add(x, r), after);
  });
}

const cachedSteps = [...SCHEDULE].flatMap((c, step) => c === "." ? [step] : []);

for (const cacheType of ["residual", "hidden_states"]) {
  gpuTest(`dbcache F1B1 + FoCa (${cacheType}), host- and GPU-decided, against the reference`, async (ctx) => {
    // The mask computes on "C"; the other steps cache (random residuals: every diff is far below 10).
    const scripts = [...SCHEDULE].map((_, step) => ({
      hidden: randn(SIZE, 10 + step),
      residuals: [0.1, 0.3, 0.3, 0.1].map((scale, i) => randn(SIZE, 100 * step + i, scale)),
    }));
    const options = {
      strategy: "dbcache",
      Fn: 1,
      Bn: 1,
      residual_diff_threshold: 10,
      max_warmup_steps: 0,
      steps_computation_mask: [...SCHEDULE].map((c) => Number(c === "C")),
      calibrator_type: "foca",
      enable_calibrator: true,
      calibrator_cache_type: cacheType,
    };
    const expected = expectedOutputs(scripts, [1, 2], cacheType);
    for (const path of DECISION_PATHS) {
      const r = await run(ctx, options, scripts, path);
      const what = `${path} path`;
      assert.deepEqual(r.stats.cachedSteps, cachedSteps, what);
      assert.equal(r.stats.strategy, `dbcache F1B1 + FoCa (${cacheType})`);
      r.outputs.forEach((o, step) => assertClose(o, expected[step], TOL, `${what} step ${step}`));
      // R_F, R_F*, M's input and residual, FoCa's four tensors.
      assert.equal(r.stats.memoryBytes, 8 * SIZE * 4);
      if (path === "gpu") assert.equal(r.stats.readbacks, 1, "only the log, after the run");
    }
  });

  gpuTest(`dbprune F1B2 + FoCa (${cacheType}), host- and GPU-decided, against the reference`, async (ctx) => {
    // Block 1 alone is prunable. Its input stays the same until the next "C" step, where it moves to fresh
    // noise (diff ~1 > 0.5): pruned exactly on "." steps.
    let base = randn(SIZE, 1);
    const r0 = randn(SIZE, 2, 0.1);
    const scripts = [...SCHEDULE].map((c, step) => {
      if (c === "C") base = randn(SIZE, 20 + step);
      return {
        hidden: base,
        residuals: [r0, ...[0.3, 0.1, 0.1].map((scale, i) => randn(SIZE, 100 * step + i, scale))],
      };
    });
    const options = {
      strategy: "dbprune",
      Fn: 1,
      Bn: 2,
      residual_diff_threshold: 0.5,
      max_warmup_steps: 0,
      calibrator_type: "foca",
      enable_calibrator: true,
      calibrator_cache_type: cacheType,
    };
    const expected = expectedOutputs(scripts, [1], cacheType);
    for (const path of DECISION_PATHS) {
      const r = await run(ctx, options, scripts, path);
      const what = `${path} path`;
      assert.deepEqual(r.stats.cachedSteps, cachedSteps, what);
      assert.equal(r.stats.strategy, `dbprune F1B2 + FoCa (${cacheType})`);
      r.outputs.forEach((o, step) => assertClose(o, expected[step], TOL, `${what} step ${step}`));
      assert.equal(r.stats.memoryBytes, 6 * SIZE * 4, "block 1's input and residual, FoCa's four tensors");
    }
  });
}

conformanceSuite(
  "dbcache F1B0 + FoCa",
  (ctx, { threshold, warmup, blocks, steps, path }) =>
    createStrategy(
      ctx,
      resolveCacheOptions({
        strategy: "dbcache",
        Fn: 1,
        Bn: 0,
        enable_calibrator: true,
        calibrator_type: "foca",
        residual_diff_threshold: threshold,
        max_warmup_steps: warmup,
      }, { blocks, steps, channels: SHAPE[2] }),
      path,
    ),
);
