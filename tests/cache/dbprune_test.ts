// DBPrune on the scripted fake block list: the conformance suite, then exact per-block sequences and outputs.
import assert from "node:assert/strict";
import { DbPrune } from "../../src/cache/dbprune.ts";
import type { DecisionPath } from "../../src/cache/decision_path.ts";
import { resolveCacheOptions, type ResolvedDbPrune } from "../../src/cache/options.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { dyadic, fakeBlocks } from "../support/fake_blocks.ts";
import { gpuTest } from "../support/gpu.ts";
import { assertClose } from "../support/assert_close.ts";
import { randn } from "../support/random.ts";
import { conformanceSuite, drive, SHAPE, SIZE, type StepScript } from "./conformance.ts";

function dbprune(
  ctx: GpuContext,
  options: Record<string, unknown>,
  blocks: number,
  steps: number,
  path: DecisionPath = "readback",
): DbPrune {
  return new DbPrune(
    ctx,
    resolveCacheOptions({ strategy: "dbprune", ...options }, {
      blocks,
      steps,
      channels: SHAPE[2],
    }) as ResolvedDbPrune,
    path,
  );
}

conformanceSuite(
  "dbprune F1B1",
  (ctx, { threshold, warmup, blocks, steps, path }) =>
    dbprune(
      ctx,
      { Fn: 1, Bn: 1, residual_diff_threshold: threshold, max_warmup_steps: warmup },
      blocks,
      steps,
      path,
    ),
);
conformanceSuite(
  "dbprune F0B0 + TaylorSeer, dynamic threshold",
  (ctx, { threshold, warmup, blocks, steps, path }) =>
    dbprune(
      ctx,
      {
        Fn: 0,
        Bn: 0,
        enable_taylorseer: true,
        enable_dynamic_prune_threshold: true,
        residual_diff_threshold: threshold,
        max_warmup_steps: warmup,
      },
      blocks,
      steps,
      path,
    ),
);

const BLOCKS = 4;
const add = (...xs: Float32Array[]) => xs.reduce((a, b) => a.map((v, i) => v + b[i]));

async function run(
  ctx: GpuContext,
  options: Record<string, unknown>,
  scripts: StepScript[],
  path: DecisionPath = "readback",
) {
  const fake = fakeBlocks(ctx, BLOCKS, SHAPE);
  const strategy = dbprune(
    ctx,
    { Fn: 1, Bn: 1, residual_diff_threshold: 0.1, max_warmup_steps: 1, ...options },
    BLOCKS,
    scripts.length,
    path,
  );
  const result = await drive(ctx, strategy, fake, scripts);
  const stats = strategy.stats();
  strategy.release();
  fake.release();
  return { ...result, stats };
}

gpuTest(
  "dbprune: a block whose input barely moved is pruned (input + stored residual); the next one is judged on that",
  async (ctx) => {
    // Step 1 shifts the input by 1/64 on 60 of 120 values (diff ~0.02 at every block): both middle blocks
    // prune. Step 2 moves every value by 1 (diff ~ 2): both run on their new residuals. Dyadic: bit exact.
    const h0 = dyadic(SIZE, 600);
    const r = [0, 1, 2, 3].map((i) => dyadic(SIZE, 610 + i));
    const r2 = [r[0], ...[1, 2, 3].map((i) => dyadic(SIZE, 620 + i))];
    const h1 = h0.map((v, i) => (i % 2 === 0 ? v + 1 / 64 : v));
    const h2 = h0.map((v) => v + 1);
    const scripts = [
      { hidden: h0, residuals: r },
      { hidden: h1, residuals: r2 },
      { hidden: h2, residuals: r2 },
    ];
    const out = await run(ctx, {}, scripts);
    assert.deepEqual(out.reports.map((x) => x.blocksRun), [4, 2, 4]);
    assert.deepEqual(out.stats.prunedBlocks, [0, 2, 0]);
    assert.equal(out.stats.prunedRatio, 2 / 12);
    assert.deepEqual(out.stats.cachedSteps, [1]);
    assert.deepEqual(
      out.outputs[1],
      add(h1, r[0], r[1], r[2], r2[3]),
      "blocks 1, 2 replay step 0's residuals",
    );
    assert.deepEqual(out.outputs[2], add(h2, ...r2));
    assert.equal(out.stats.readbacks, 4, "blocks 1 and 2 judged at steps 1 and 2");
    assert.deepEqual(out.stats.blockDiffs[0], [null, null, null, null]);
    assert.equal(out.stats.blockDiffs[1][0], null);
    assert.ok(out.stats.blockDiffs[1][1]! < 0.1 && out.stats.blockDiffs[2][1]! > 1);
    assert.equal(
      out.stats.memoryBytes,
      2 * 2 * SIZE * 4,
      "input + residual for each of the 2 prunable blocks",
    );
    assert.equal(out.stats.gates.join(), "warmup,similar,not_similar");
  },
);

gpuTest("dbprune: non_prune_blocks_ids run every step; max_pruned_steps stops pruning", async (ctx) => {
  const hidden = dyadic(SIZE, 700);
  const residuals = [0, 1, 2, 3].map((i) => dyadic(SIZE, 710 + i));
  const scripts = new Array(5).fill({ hidden, residuals });
  const pinned = await run(ctx, { non_prune_blocks_ids: [2] }, scripts);
  assert.deepEqual(pinned.reports.map((x) => x.blocksRun), [4, 3, 3, 3, 3]);
  const limited = await run(ctx, { max_pruned_steps: 2 }, scripts);
  assert.deepEqual(limited.reports.map((x) => x.blocksRun), [4, 2, 2, 4, 4]);
  assert.deepEqual(limited.stats.gates.slice(3), ["max_pruned_steps", "max_pruned_steps"]);
});

gpuTest(
  "dbprune residual_cache_update_interval: a block run between refreshes keeps its old residual",
  async (ctx) => {
    // Step 1: the input jumps (block 1 runs) but step 1 is not a refresh step for interval 2, so step 2
    // (input back near step 0's) replays step 0's residual, not step 1's.
    const h0 = dyadic(SIZE, 800);
    const r0 = dyadic(SIZE, 809);
    const rs = [0, 1, 2].map((s) => [r0, ...[1, 2, 3].map((i) => dyadic(SIZE, 810 + 10 * s + i))]);
    const scripts = [
      { hidden: h0, residuals: rs[0] },
      { hidden: h0.map((v) => v + 3), residuals: rs[1] },
      { hidden: h0, residuals: rs[2] },
    ];
    const options = { Bn: 2, non_prune_blocks_ids: [], residual_cache_update_interval: 2 };
    const out = await run(ctx, options, scripts);
    assert.deepEqual(out.stats.prunedBlocks, [0, 0, 1]);
    assert.deepEqual(out.outputs[2], add(h0, r0, rs[0][1], rs[2][2], rs[2][3]));
  },
);

gpuTest(
  "dbprune decided on the GPU: the host-decided blocks, diffs and outputs, one readback",
  async (ctx) => {
    // Inputs drifting by different amounts per step, so that blocks prune on some steps and not others.
    const base = dyadic(SIZE, 900);
    const r = [0, 1, 2, 3].map((i) => dyadic(SIZE, 910 + i));
    const shifts = [0, 1 / 64, 1 / 32, 1 / 2, 1 / 2 + 1 / 64, 1, 1, 3 / 2];
    const scripts = shifts.map((d) => ({
      hidden: base.map((v, i) => (i % 3 === 0 ? v + d : v)),
      residuals: r,
    }));
    const cases: Record<string, unknown>[] = [
      {},
      { Fn: 0, Bn: 0, enable_dynamic_prune_threshold: true },
      { max_pruned_steps: 2 },
      { residual_cache_update_interval: 3, Bn: 0 },
    ];
    for (const options of cases) {
      const host = await run(ctx, options, scripts);
      const gpu = await run(ctx, options, scripts, "gpu");
      const what = JSON.stringify(options);
      assert.deepEqual(gpu.stats.prunedBlocks, host.stats.prunedBlocks, what);
      assert.deepEqual(gpu.stats.gates, host.stats.gates, what);
      assert.deepEqual(gpu.stats.blockDiffs, host.stats.blockDiffs, what);
      assert.deepEqual(gpu.outputs, host.outputs, what);
      assert.deepEqual(gpu.reports, host.reports, what);
      assert.equal(gpu.stats.readbacks, 1, `${what}: only the log, after the run`);
      assert.ok(
        host.stats.prunedBlocks.some((p) => p > 0) || options.max_pruned_steps === 0,
        `${what} prunes`,
      );
    }
  },
);

gpuTest(
  "dbprune + TaylorSeer: a pruned block extrapolates its residual from the steps it ran",
  async (ctx) => {
    // Blocks 1 and 2 add (s + 1) * m_i; with inputs judged similar after warmup (threshold 10), a first-order
    // TaylorSeer predicts 3 m_i and 4 m_i at steps 2 and 3 where a replay repeats 2 m_i. Dyadic: bit exact.
    const [hidden, r0, r3, m1, m2] = [950, 951, 952, 953, 954].map((seed) => dyadic(SIZE, seed));
    const scale = (m: Float32Array, k: number) => m.map((v) => (v / 2) * k);
    const scripts = [0, 1, 2, 3].map((s) => ({
      hidden,
      residuals: [r0, scale(m1, s + 1), scale(m2, s + 1), r3],
    }));
    const options = { residual_diff_threshold: 10, max_warmup_steps: 2, enable_taylorseer: true };
    const out = await run(ctx, options, scripts);
    assert.deepEqual(out.stats.prunedBlocks, [0, 0, 2, 2]);
    for (const s of [2, 3]) {
      assert.deepEqual(out.outputs[s], add(hidden, r0, scale(m1, s + 1), scale(m2, s + 1), r3), `step ${s}`);
    }
    const replay = await run(ctx, { ...options, enable_taylorseer: false }, scripts);
    assert.deepEqual(replay.outputs[3], add(hidden, r0, scale(m1, 2), scale(m2, 2), r3), "without: replayed");
  },
);

gpuTest(
  "dbprune + TaylorSeer decided on the GPU: the host's pruned blocks, outputs within f32 weight rounding",
  async (ctx) => {
    // Inputs drift a little (most blocks prune at 0.2), block residuals change every step.
    const base = dyadic(SIZE, 960);
    const scripts = [0, 1, 2, 3, 4, 5, 6, 7].map((s) => ({
      hidden: base.map((v, i) => (i % 4 === 0 ? v + s / 64 : v)),
      residuals: [0, 1, 2, 3].map((b) => randn(SIZE, 970 + 10 * s + b, 0.2)),
    }));
    const cases: Record<string, unknown>[] = [
      { Fn: 0, Bn: 0, residual_diff_threshold: 0.3, enable_taylorseer: true },
      {
        Fn: 0,
        Bn: 0,
        residual_diff_threshold: 0.3,
        enable_taylorseer: true,
        n_derivatives: 2,
        residual_cache_update_interval: 2,
      },
      {
        Fn: 0,
        Bn: 0,
        residual_diff_threshold: 0.3,
        enable_taylorseer: true,
        taylorseer_cache_type: "hidden_states",
      },
    ];
    for (const options of cases) {
      const host = await run(ctx, options, scripts);
      const gpu = await run(ctx, options, scripts, "gpu");
      const what = JSON.stringify(options);
      assert.ok(host.stats.prunedBlocks.reduce((a, b) => a + b, 0) >= 3, `${what} prunes`);
      assert.deepEqual(gpu.stats.prunedBlocks, host.stats.prunedBlocks, what);
      assert.deepEqual(gpu.stats.gates, host.stats.gates, what);
      // Weights computed in f32 on the GPU (WGSL division: 2.5 ulp) against f64 then f32 on the host; the
      // block diffs read those outputs back, so they agree to the same few ulp.
      gpu.outputs.forEach((o, step) =>
        assertClose(o, host.outputs[step], { atol: 2e-5, rtol: 2e-5 }, `${what} step ${step}`)
      );
      assert.equal(gpu.stats.readbacks, 1, `${what}: only the log, after the run`);
    }
  },
);
