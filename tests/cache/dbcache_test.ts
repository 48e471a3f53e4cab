import assert from "node:assert/strict";
import { DbCache } from "../../src/cache/dbcache.ts";
import type { DecisionPath } from "../../src/cache/decision_path.ts";
import { resolveCacheOptions, type ResolvedDbCache } from "../../src/cache/options.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { dyadic, fakeBlocks } from "../support/fake_blocks.ts";
import { gpuTest } from "../support/gpu.ts";
import { assertClose } from "../support/assert_close.ts";
import { randn } from "../support/random.ts";
import {
  conformanceSuite,
  constantScripts,
  drive,
  randomScripts,
  SHAPE,
  SIZE,
  type StepScript,
} from "./conformance.ts";

function dbcache(
  ctx: GpuContext,
  options: Record<string, unknown>,
  blocks: number,
  steps: number,
  path: DecisionPath = "readback",
): DbCache {
  const resolved = resolveCacheOptions(options, { blocks, steps, channels: SHAPE[2] }) as ResolvedDbCache;
  return new DbCache(ctx, resolved, { path });
}

conformanceSuite(
  "dbcache F1B1",
  (ctx, { threshold, warmup, blocks, steps, path }) =>
    dbcache(
      ctx,
      { strategy: "dbcache", Fn: 1, Bn: 1, residual_diff_threshold: threshold, max_warmup_steps: warmup },
      blocks,
      steps,
      path,
    ),
);
conformanceSuite(
  "fbcache",
  (ctx, { threshold, warmup, blocks, steps, path }) =>
    dbcache(
      ctx,
      { strategy: "fbcache", residual_diff_threshold: threshold, max_warmup_steps: warmup },
      blocks,
      steps,
      path,
    ),
);
conformanceSuite(
  "dbcache F2B2 with Bn_compute_blocks_ids [1]",
  (ctx, { threshold, warmup, blocks, steps, path }) =>
    dbcache(
      ctx,
      {
        strategy: "dbcache",
        Fn: 2,
        Bn: 2,
        Bn_compute_blocks_ids: [1],
        residual_diff_threshold: threshold,
        max_warmup_steps: warmup,
      },
      blocks,
      steps,
      path,
    ),
);

conformanceSuite(
  "dbcache F1B0 + TaylorSeer",
  (ctx, { threshold, warmup, blocks, steps, path }) =>
    dbcache(
      ctx,
      {
        strategy: "dbcache",
        Fn: 1,
        Bn: 0,
        enable_taylorseer: true,
        n_derivatives: 2,
        residual_diff_threshold: threshold,
        max_warmup_steps: warmup,
      },
      blocks,
      steps,
      path,
    ),
);

const BLOCKS = 4;

/** Block 0 (= F) adds the constant values[step]; the other blocks and hidden stay fixed. */
function scriptedF(values: number[]): StepScript[] {
  const hidden = dyadic(SIZE, 1);
  const rest = [1, 2, 3].map((i) => dyadic(SIZE, 10 + i));
  return values.map((v) => ({ hidden, residuals: [new Float32Array(SIZE).fill(v), ...rest] }));
}

async function cachedSteps(
  ctx: GpuContext,
  options: Record<string, unknown>,
  scripts: StepScript[],
  path: DecisionPath = "readback",
) {
  const fake = fakeBlocks(ctx, BLOCKS, SHAPE);
  const strategy = dbcache(
    ctx,
    {
      strategy: "dbcache",
      Fn: 1,
      Bn: 1,
      residual_diff_threshold: 0.1,
      max_warmup_steps: 1,
      ...options,
    },
    BLOCKS,
    scripts.length,
    path,
  );
  const run = await drive(ctx, strategy, fake, scripts);
  const stats = strategy.stats();
  strategy.release();
  fake.release();
  return { ...run, stats, cached: stats.cachedSteps };
}

const ones = (n: number) => new Array(n).fill(1);

gpuTest("dbcache gates on scripted residuals: warmup, interval, max cached, max continuous", async (ctx) => {
  assert.deepEqual((await cachedSteps(ctx, { max_warmup_steps: 3 }, scriptedF(ones(8)))).cached, [
    3,
    4,
    5,
    6,
    7,
  ]);
  const interval = await cachedSteps(ctx, { max_warmup_steps: 6, warmup_interval: 2 }, scriptedF(ones(8)));
  assert.deepEqual(interval.cached, [1, 3, 5, 6, 7]);
  assert.deepEqual((await cachedSteps(ctx, { max_cached_steps: 2 }, scriptedF(ones(8)))).cached, [1, 2]);
  const continuous = await cachedSteps(ctx, { max_continuous_cached_steps: 2 }, scriptedF(ones(8)));
  assert.deepEqual(continuous.cached, [1, 2, 4, 5, 7]);
  assert.equal(continuous.stats.gates[3], "max_continuous_cached_steps");
});

gpuTest(
  "dbcache decided on the GPU: the host-decided steps, gates, diffs and outputs, one readback",
  async (ctx) => {
    const drift = [1, 1.04, 1.02, 1.3, 1.31, 1.2, 1.32, 1.33, 1.34, 1.5];
    const cases: Record<string, unknown>[] = [
      {},
      { max_cached_steps: 2 },
      { max_continuous_cached_steps: 1 },
      { max_accumulated_residual_diff: 0.1 },
      { steps_computation_mask: [1, 0, 0, 1, 0, 0, 1, 0, 0, 1], steps_computation_policy: "static" },
      { steps_computation_mask: [1, 1, 0, 0, 1, 0, 0, 0, 0, 1], max_warmup_steps: 0 },
    ];
    for (const options of cases) {
      const host = await cachedSteps(ctx, options, scriptedF(drift));
      const gpu = await cachedSteps(ctx, options, scriptedF(drift), "gpu");
      const what = JSON.stringify(options);
      assert.deepEqual(gpu.stats.cachedSteps, host.stats.cachedSteps, what);
      assert.deepEqual(gpu.stats.gates, host.stats.gates, what);
      assert.deepEqual(gpu.stats.diffs, host.stats.diffs, what);
      assert.deepEqual(gpu.outputs, host.outputs, what);
      assert.deepEqual(gpu.reports, host.reports, what);
      assert.equal(gpu.stats.blocksExecuted, host.stats.blocksExecuted, what);
      // A static mask decides every step on the host: nothing to read at all.
      const reads = options.steps_computation_policy === "static" ? 0 : 1;
      assert.equal(gpu.stats.readbacks, reads, `${what}: only the log, after the run`);
    }
  },
);

gpuTest(
  "dbcache + TaylorSeer decided on the GPU: the host's steps and gates, outputs within f32 weight rounding",
  async (ctx) => {
    // F drifts as above; M's residuals change every step, so the calibrator's differences matter.
    const drift = [1, 1.04, 1.02, 1.3, 1.31, 1.2, 1.32, 1.33, 1.34, 1.5, 1.51, 1.52];
    const scripts = scriptedF(drift).map((s, step) => ({
      ...s,
      residuals: [s.residuals[0], randn(SIZE, 50 + step, 0.3), randn(SIZE, 80 + step, 0.3), s.residuals[3]],
    }));
    const cases: Record<string, unknown>[] = [
      { enable_taylorseer: true },
      { enable_taylorseer: true, n_derivatives: 2, taylorseer_cache_type: "hidden_states" },
      {
        enable_taylorseer: true,
        n_derivatives: 3,
        steps_computation_mask: [1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0],
        max_warmup_steps: 0,
      },
    ];
    for (const options of cases) {
      const host = await cachedSteps(ctx, options, scripts);
      const gpu = await cachedSteps(ctx, options, scripts, "gpu");
      const what = JSON.stringify(options);
      assert.ok(host.stats.cachedSteps.length >= 3, `${what} caches`);
      assert.deepEqual(gpu.stats.cachedSteps, host.stats.cachedSteps, what);
      assert.deepEqual(gpu.stats.gates, host.stats.gates, what);
      assert.deepEqual(gpu.stats.diffs, host.stats.diffs, what);
      // The kernel computes 1/w and k^i/i! in f32 (WGSL division: 2.5 ulp), the host in f64 then rounds:
      // a few ulp of values up to ~10 after three extrapolated terms.
      gpu.outputs.forEach((o, step) =>
        assertClose(o, host.outputs[step], { atol: 2e-5, rtol: 2e-5 }, `${what} step ${step}`)
      );
      assert.equal(gpu.stats.readbacks, 1, `${what}: only the log, after the run`);
    }
  },
);

gpuTest("dbcache accumulated diff: cached while the measured diffs sum below the limit", async (ctx) => {
  const r = await cachedSteps(
    ctx,
    { max_accumulated_residual_diff: 0.1 },
    scriptedF([1, ...new Array(6).fill(1.04)]),
  );
  assert.deepEqual(r.cached, [1, 2, 3]);
  assert.equal(r.stats.readbacks, 3, "no diff is read once a gate before the threshold decides");
  assert.deepEqual(r.stats.gates.slice(4), new Array(3).fill("max_accumulated_residual_diff"));
});

gpuTest(
  "dbcache threshold: R_F drift is measured against the last computed step, not the previous one",
  async (ctx) => {
    const r = await cachedSteps(ctx, {}, scriptedF([1, 1.0625, 1.125, 1.125, 1.25, 1.25]));
    // Step 2 moved 0.0588 from step 1 but 0.125 from step 0 (the reference): it computes.
    assert.deepEqual(r.cached, [1, 3, 5]);
    const expected = [null, 0.0625, 0.125, 0, 0.125 / 1.125, 0];
    r.stats.diffs.forEach((d, s) => {
      const e = expected[s];
      // Equal-valued tensors: the f32 sums of 60 identical terms and one division are within 1e-6 relative.
      assert.ok(d === e || (d !== null && e !== null && Math.abs(d - e) <= 1e-6), `step ${s}: ${d} vs ${e}`);
    });
    assert.equal(r.stats.readbacks, 5);
  },
);

gpuTest(
  "dbcache SCM: static caches every 0 step without a diff; dynamic leaves 0 steps to the gates",
  async (ctx) => {
    const mask = [1, 0, 0, 1, 0, 0, 0, 0];
    const policy = (p: string) => ({
      steps_computation_mask: mask,
      steps_computation_policy: p,
      max_warmup_steps: 0,
    });
    const stat = await cachedSteps(ctx, policy("static"), scriptedF([1, 2, 3, 4, 5, 6, 7, 8]));
    assert.deepEqual(stat.cached, [1, 2, 4, 5, 6, 7]);
    assert.equal(stat.stats.readbacks, 0);
    const dynamic = await cachedSteps(ctx, policy("dynamic"), scriptedF([1, 1, 2, 2, 2, 2, 2, 2]));
    assert.deepEqual(dynamic.cached, [1, 4, 5, 6, 7]);
  },
);

gpuTest("dbcache downsample_factor: the diff sees every k-th channel only", async (ctx) => {
  // Channels 0, 3, 6, 9 hold 1 every step; the others change by 100% per step.
  const scripts = scriptedF(ones(5)).map((s, step) => {
    const r = s.residuals[0].map((v, i) => (i % 12) % 3 === 0 ? v : step + 1);
    return { ...s, residuals: [r, ...s.residuals.slice(1)] };
  });
  assert.deepEqual((await cachedSteps(ctx, {}, scripts)).cached, []);
  assert.deepEqual((await cachedSteps(ctx, { downsample_factor: 3 }, scripts)).cached, [1, 2, 3, 4]);
});

gpuTest(
  "dbcache cached step: hidden = input + R_F now + M's residual stored at the last compute, then B",
  async (ctx) => {
    // Dyadic values: every sum below is exact in f32, so the comparison is bit for bit.
    const scripts = [0, 1, 2].map((s) => ({
      hidden: dyadic(SIZE, 100 + s),
      residuals: [0, 1, 2, 3].map((i) => dyadic(SIZE, 200 + 10 * s + i)),
    }));
    const r = await cachedSteps(ctx, { residual_diff_threshold: 10 }, scripts);
    assert.deepEqual(r.cached, [1, 2]);
    assert.deepEqual(r.reports.map((x) => x.blocksRun), [4, 2, 2]);
    const add = (...xs: Float32Array[]) => xs.reduce((a, b) => a.map((v, i) => v + b[i]));
    const m0 = add(scripts[0].residuals[1], scripts[0].residuals[2]);
    assert.deepEqual(r.outputs[0], add(scripts[0].hidden, ...scripts[0].residuals));
    for (const s of [1, 2]) {
      const { hidden, residuals } = scripts[s];
      assert.deepEqual(r.outputs[s], add(hidden, residuals[0], m0, residuals[3]), `step ${s}`);
    }
  },
);

for (const path of ["readback", "gpu"] as const) {
  gpuTest(
    `dbcache Bn_compute_blocks_ids (${path}): an unlisted B block whose input barely moved replays its residual`,
    async (ctx) => {
      const scripts = [0, 1].map((s) => ({
        hidden: dyadic(SIZE, 300),
        residuals: [0, 1, 2, 3].map((i) => dyadic(SIZE, 400 + 10 * s + i)),
      }));
      const base = { Fn: 1, Bn: 2, Bn_compute_blocks_ids: [0], residual_diff_threshold: 10 };
      const add = (...xs: Float32Array[]) => xs.reduce((a, b) => a.map((v, i) => v + b[i]));
      const [h, r0, r1] = [scripts[1].hidden, scripts[1].residuals, scripts[0].residuals];
      const options = { ...base, non_compute_blocks_diff_threshold: 10 };
      const replay = await cachedSteps(ctx, options, scripts, path);
      assert.deepEqual(replay.reports.map((x) => x.blocksRun), [4, 2]);
      assert.deepEqual(
        replay.outputs[1],
        add(h, r0[0], r1[1], r0[2], r1[3]),
        "block 3 replays step 0's residual",
      );
      const reads = path === "gpu" ? [1, "the log"] : [2, "the F decision, then block 3's input diff"];
      assert.equal(replay.stats.readbacks, reads[0], reads[1] as string);
      assert.equal(
        replay.stats.memoryBytes,
        6 * SIZE * 4,
        "R_F, R_F*, M residual, scratch, block 3 input + residual",
      );
      const run = await cachedSteps(ctx, { ...base, non_compute_blocks_diff_threshold: 0 }, scripts, path);
      assert.deepEqual(run.reports.map((x) => x.blocksRun), [4, 3]);
      assert.deepEqual(
        run.outputs[1],
        add(h, r0[0], r1[1], r0[2], r0[3]),
        "block 3 runs on its new residual",
      );
    },
  );
}

gpuTest(
  "dbcache Bn_compute_blocks_ids decided on the GPU: the readback path's blocks, decisions and outputs",
  async (ctx) => {
    // F drifts so that some steps cache; blocks 2 and 3 (B) see inputs that move by different amounts, so
    // the unlisted ones replay on some cached steps and run on others.
    const drift = [1, 1.04, 1.02, 1.3, 1.31, 1.2, 1.32, 1.33];
    const scripts = scriptedF(drift).map((s, step) => ({
      ...s,
      residuals: [s.residuals[0], s.residuals[1], randn(SIZE, 90 + step, 0.02 * (step % 3)), s.residuals[3]],
    }));
    let replayed = 0;
    for (const ids of [[], [0], [1]]) {
      for (const threshold of [0, 0.01, 0.05]) {
        const options = {
          Bn: 2,
          Bn_compute_blocks_ids: ids,
          non_compute_blocks_diff_threshold: threshold,
          max_warmup_steps: 1,
        };
        const host = await cachedSteps(ctx, options, scripts);
        const gpu = await cachedSteps(ctx, options, scripts, "gpu");
        const what = JSON.stringify(options);
        assert.deepEqual(gpu.reports, host.reports, what);
        assert.deepEqual(gpu.outputs, host.outputs, what);
        assert.deepEqual(
          { ...gpu.stats, readbacks: 0 },
          { ...host.stats, readbacks: 0, decisions: "gpu" },
          what,
        );
        assert.equal(gpu.stats.readbacks, 1, `${what}: only the log`);
        replayed += host.reports.filter((r) => r.cached && r.blocksRun < 3).length;
      }
    }
    assert.ok(replayed > 0, "some unlisted block replayed on a cached step");
  },
);

gpuTest(
  "fbcache (F1B0) at a high threshold caches after warmup and runs one block per cached step",
  async (ctx) => {
    const fake = fakeBlocks(ctx, BLOCKS, SHAPE);
    const strategy = dbcache(
      ctx,
      { strategy: "fbcache", residual_diff_threshold: 10, max_warmup_steps: 2 },
      BLOCKS,
      6,
    );
    const { reports } = await drive(ctx, strategy, fake, randomScripts(BLOCKS, 6, 3));
    const stats = strategy.stats();
    assert.deepEqual(stats.cachedSteps, [2, 3, 4, 5]);
    assert.deepEqual(reports.map((r) => r.blocksRun), [4, 4, 1, 1, 1, 1]);
    assert.equal(stats.strategy, "fbcache F1B0");
    assert.equal(stats.memoryBytes, 4 * SIZE * 4);
    strategy.release();
    fake.release();
  },
);

for (const cacheType of ["residual", "hidden_states"]) {
  gpuTest(
    `dbcache + TaylorSeer (${cacheType}): a cached step extrapolates M instead of replaying it`,
    async (ctx) => {
      // M's residual grows linearly, (s + 1) * m, with F's residual, B's and the input fixed: a first-order
      // TaylorSeer predicts it exactly (3m, 4m at steps 2, 3) where a replay repeats 2m. Dyadic: bit exact.
      const [hidden, r0, r3, m] = [500, 501, 502, 503].map((seed) => dyadic(SIZE, seed));
      const half = m.map((v) => v / 2);
      const scripts = [0, 1, 2, 3].map((s) => ({
        hidden,
        residuals: [r0, half.map((v) => v * (s + 1)), half.map((v) => v * (s + 1)), r3],
      }));
      const add = (...xs: Float32Array[]) => xs.reduce((a, b) => a.map((v, i) => v + b[i]));
      const options = { residual_diff_threshold: 10, max_warmup_steps: 2, enable_taylorseer: true };
      const r = await cachedSteps(ctx, { ...options, taylorseer_cache_type: cacheType }, scripts);
      assert.deepEqual(r.cached, [2, 3]);
      for (const s of [2, 3]) {
        assert.deepEqual(r.outputs[s], add(hidden, r0, m.map((v) => v * (s + 1)), r3), `step ${s}`);
      }
      assert.match(r.stats.strategy, new RegExp(`TaylorSeer \\(${cacheType}, 1 derivatives\\)`));
      // 4 DBCache tensors + d_cur and d_prev of orders 0 and 1.
      assert.equal(r.stats.memoryBytes, 8 * SIZE * 4);
      const replay = await cachedSteps(ctx, { ...options, enable_taylorseer: false }, scripts);
      assert.deepEqual(replay.outputs[3], add(hidden, r0, m.map((v) => v * 2), r3), "without: 2m replayed");
    },
  );
}

gpuTest("dbcache: clamp notes reach the stats; a wrong block count is refused", async (ctx) => {
  const clamped = dbcache(ctx, { strategy: "dbcache", preset: "F8B8" }, BLOCKS, 4);
  assert.deepEqual(clamped.stats().notes, [
    "preset F8B8 asks for 16 blocks but the model has 4: clamped to F2B1",
  ]);
  const fake = fakeBlocks(ctx, 5, SHAPE);
  await assert.rejects(
    drive(ctx, clamped, fake, constantScripts(5, 1, 1)),
    /options were resolved for 4 blocks, the model has 5/,
  );
  fake.release();
  clamped.release();
  const encoder = dbcache(ctx, { strategy: "dbcache", enable_encoder_taylorseer: true }, 12, 28);
  assert.equal(encoder.stats().strategy, "dbcache F8B0", "the encoder calibrator needs enable_taylorseer");
});
