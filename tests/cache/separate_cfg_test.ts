// Separate CFG caches (src/cache/separate_cfg.ts) on the scripted block list: two passes per step, each with
// its own scripts. Each pass must decide and produce exactly what a strategy driven on that pass alone does
// (no state leaks between them), on the host and on the GPU; with cfg_diff_compute_separate false the
// unconditional pass takes the conditional pass' diff of its step.
import assert from "node:assert/strict";
import { createStrategy } from "../../src/cache/create.ts";
import { DECISION_PATHS, type DecisionPath } from "../../src/cache/decision_path.ts";
import { CacheOptionsError, resolveCacheOptions } from "../../src/cache/options.ts";
import type { CacheStrategy, CfgBranch, ForwardReport } from "../../src/cache/strategy.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { fakeBlocks } from "../support/fake_blocks.ts";
import { gpuTest } from "../support/gpu.ts";
import { randomScripts, SHAPE, type StepScript } from "./conformance.ts";

const BLOCKS = 4;
const STEPS = 8;

function strategy(
  ctx: GpuContext,
  options: Record<string, unknown>,
  cfgPasses: "batched" | "separate",
  path: DecisionPath,
) {
  const context = { blocks: BLOCKS, steps: STEPS, channels: SHAPE[2], cfgPasses, pipeline: "WanPipeline" };
  return createStrategy(ctx, resolveCacheOptions(options, context), path);
}

/** Scripts that change a lot every `period`-th step and little otherwise, so that thresholds cache some. */
function slowScripts(seed: number, period: number): StepScript[] {
  const base = randomScripts(BLOCKS, STEPS, seed);
  // A random walk of the residuals: small moves cache, the large one every `period` steps computes.
  let residuals = base[0].residuals;
  return base.map((s, step) => {
    const move = step % period === 0 ? 0.5 : 0.02;
    residuals = residuals.map((r, b) => r.map((v, i) => v + move * s.residuals[b][i]));
    return { hidden: s.hidden, residuals };
  });
}

/**
 * Drives `branches` per step (each with its scripts); returns every branch's reports and outputs. The
 * reports left on the GPU are read behind every step (as onStep reads them) when `behind`.
 */
async function drivePasses(
  ctx: GpuContext,
  cache: CacheStrategy,
  scripts: Record<string, StepScript[]>,
  branches: (CfgBranch | undefined)[],
  behind = false,
) {
  const fake = fakeBlocks(ctx, BLOCKS, SHAPE);
  const recorder = new StepRecorder(ctx.gpu);
  const outputs: Record<string, Float32Array[]> = {};
  const reports: (ForwardReport | null)[] = [];
  const settled: ForwardReport[] = [];
  for (let step = 0; step < STEPS; step++) {
    for (const branch of branches) {
      const s = scripts[branch ?? "cond"][step];
      fake.script(s.hidden, s.residuals);
      const report = await cache.forward({ step, steps: STEPS, branch }, fake.list, recorder);
      if (branch !== "uncond") reports.push(report);
      await ctx.kernels.ready();
      (outputs[branch ?? "cond"] ??= []).push(await recorder.read(fake.list.hidden));
    }
    if (behind) settled.push(...await cache.settle(recorder));
  }
  settled.push(...await cache.settle(recorder));
  fake.release();
  return { reports: reports.map((r) => r ?? settled.shift()!), outputs, stats: cache.stats() };
}

const OPTIONS = { strategy: "dbcache", Fn: 1, Bn: 1, residual_diff_threshold: 0.2, max_warmup_steps: 1 };

for (const path of DECISION_PATHS) {
  const mode = path === "gpu" ? "GPU-decided" : "host-decided";

  gpuTest(`separate CFG (${mode}): each pass caches as if it ran alone`, async (ctx) => {
    const scripts = { cond: slowScripts(3, 3), uncond: slowScripts(40, 2) };
    const both = await drivePasses(
      ctx,
      strategy(ctx, OPTIONS, "separate", path),
      scripts,
      ["cond", "uncond"],
      path === "gpu",
    );
    for (const branch of ["cond", "uncond"] as const) {
      const alone = await drivePasses(
        ctx,
        strategy(ctx, OPTIONS, "batched", path),
        { cond: scripts[branch] },
        [undefined],
      );
      const lists = branch === "cond" ? both.stats : both.stats.cfg!;
      assert.deepEqual(lists.cachedSteps, alone.stats.cachedSteps, `${branch} cached steps`);
      assert.deepEqual(lists.diffs, alone.stats.diffs, `${branch} diffs`);
      both.outputs[branch].forEach((o, s) =>
        assert.deepEqual(o, alone.outputs.cond[s], `${branch} step ${s}`)
      );
    }
    // The scripts differ, so separate state shows: the passes must not take the same decisions.
    assert.notDeepEqual(both.stats.cachedSteps, both.stats.cfg!.cachedSteps);
    assert.ok(both.stats.cachedSteps.length > 0 && both.stats.cfg!.cachedSteps.length > 0);
    const condCached = both.reports.flatMap((r, step) => (r.cached ? [step] : []));
    assert.deepEqual(condCached, both.stats.cachedSteps, "each step's report is the conditional pass'");
    assert.equal(both.stats.blocksTotal, 2 * BLOCKS * STEPS);
  });

  gpuTest(
    `separate CFG (${mode}): cfg_diff_compute_separate false shares the conditional diff`,
    async (ctx) => {
      const scripts = { cond: slowScripts(3, 3), uncond: slowScripts(40, 2) };
      const options = { ...OPTIONS, cfg_diff_compute_separate: false };
      const { stats } = await drivePasses(
        ctx,
        strategy(ctx, options, "separate", path),
        scripts,
        ["cond", "uncond"],
        path === "gpu",
      );
      const cfg = stats.cfg!;
      assert.deepEqual(cfg.diffs, stats.diffs);
      assert.deepEqual(cfg.cachedSteps, stats.cachedSteps);
      assert.ok(stats.cachedSteps.length > 0);
    },
  );
}

gpuTest("separate CFG: a step without CFG runs the conditional pass only", async (ctx) => {
  const scripts = { cond: slowScripts(3, 3) };
  const cache = strategy(ctx, OPTIONS, "separate", "readback");
  const { stats } = await drivePasses(ctx, cache, scripts, [undefined]);
  assert.equal(stats.cfg, undefined);
  assert.equal(stats.steps, STEPS);
});

Deno.test("separate CFG options: refused where the pipeline does not run them, with cache-dit's rules", () => {
  const context = { blocks: BLOCKS, steps: STEPS, channels: SHAPE[2] };
  const refuse = (options: Record<string, unknown>, cfgPasses: "batched" | "separate", pattern: RegExp) =>
    assert.throws(
      () =>
        resolveCacheOptions({ ...OPTIONS, ...options }, { ...context, cfgPasses, pipeline: "WanPipeline" }),
      (e) => e instanceof CacheOptionsError && pattern.test(e.message),
    );
  refuse(
    { enable_separate_cfg: true },
    "batched",
    /enable_separate_cfg true needs CFG passes that are separate/,
  );
  refuse(
    { enable_separate_cfg: false },
    "separate",
    /enable_separate_cfg false is not supported by WanPipeline/,
  );
  refuse(
    { cfg_compute_first: true },
    "separate",
    /cfg_compute_first true needs cfg_diff_compute_separate false/,
  );
  refuse({ strategy: "dbprune", cfg_diff_compute_separate: false }, "separate", /dbprune: cfg_diff_compute/);
  const resolved = resolveCacheOptions({ ...OPTIONS, enable_separate_cfg: true }, {
    ...context,
    cfgPasses: "separate",
  });
  assert.ok(resolved.strategy === "dbcache" && resolved.cfg.separate && resolved.cfg.diffSeparate);
});
