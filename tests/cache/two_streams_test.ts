// DBCache and DBPrune on a two-stream block list (tests/cache/two_streams.ts), FLUX's shape: decisions are
// measured on the image stream alone, as cache-dit measures them, and every skipped span replays its stored
// residual on the text stream too (or extrapolates it, with the encoder calibrator), decided on the host or
// on the GPU alike. Dyadic values keep every sum exact, so outputs compare bit for bit.
import assert from "node:assert/strict";
import { ENCODER_NOTE, ENCODER_UNREAD_NOTE } from "../../src/cache/calibrators/calibrator.ts";
import { createStrategy } from "../../src/cache/create.ts";
import { DECISION_PATHS, type DecisionPath } from "../../src/cache/decision_path.ts";
import { resolveCacheOptions } from "../../src/cache/options.ts";
import type { CacheStrategy } from "../../src/cache/strategy.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { dyadic } from "../support/fake_blocks.ts";
import { assertClose } from "../support/assert_close.ts";
import { gpuTest } from "../support/gpu.ts";
import { randn } from "../support/random.ts";
import { conformanceSuite, drive, oneStream, SHAPE, SIZE, type StepScript } from "./conformance.ts";
import { TEXT_SIZE, twoStreamBlocks } from "./two_streams.ts";

const BLOCKS = 4;

function strategy(
  ctx: GpuContext,
  options: Record<string, unknown>,
  blocks: number,
  steps: number,
  path: DecisionPath,
) {
  return createStrategy(ctx, resolveCacheOptions(options, { blocks, steps, channels: SHAPE[2] }), path);
}

const suites: [string, Record<string, unknown>][] = [
  ["dbcache F1B1", { strategy: "dbcache", Fn: 1, Bn: 1 }],
  ["dbcache F2B2 with Bn_compute_blocks_ids [1]", {
    strategy: "dbcache",
    Fn: 2,
    Bn: 2,
    Bn_compute_blocks_ids: [1],
  }],
  ["dbcache F1B0 + TaylorSeer, encoder too", {
    strategy: "dbcache",
    Fn: 1,
    Bn: 0,
    enable_taylorseer: true,
    enable_encoder_taylorseer: true,
    n_derivatives: 2,
  }],
  ["dbprune F1B1 + TaylorSeer, encoder too", {
    strategy: "dbprune",
    Fn: 1,
    Bn: 1,
    enable_taylorseer: true,
    enable_encoder_taylorseer: true,
  }],
];
for (const [name, options] of suites) {
  conformanceSuite(
    `${name} on two streams`,
    (ctx, { threshold, warmup, blocks, steps, path }) =>
      strategy(
        ctx,
        { ...options, residual_diff_threshold: threshold, max_warmup_steps: warmup },
        blocks,
        steps,
        path,
      ),
    { fakes: twoStreamBlocks },
  );
}

const add = (...xs: Float32Array[]) => xs.reduce((a, b) => a.map((v, i) => v + b[i]));
const scale = (m: Float32Array, k: number) => m.map((v) => (v / 2) * k);
const text = (seed: number, blocks = BLOCKS) => ({
  hidden: dyadic(TEXT_SIZE, seed),
  residuals: Array.from({ length: blocks }, (_, i) => dyadic(TEXT_SIZE, seed + i + 1)),
});

async function run(
  ctx: GpuContext,
  options: Record<string, unknown>,
  scripts: StepScript[],
  path: DecisionPath,
) {
  const fake = twoStreamBlocks(ctx, BLOCKS);
  const s: CacheStrategy = strategy(ctx, { max_warmup_steps: 1, ...options }, BLOCKS, scripts.length, path);
  const result = await drive(ctx, s, fake, scripts);
  const stats = s.stats();
  s.release();
  fake.release();
  return { ...result, stats };
}

for (const path of DECISION_PATHS) {
  const mode = path === "gpu" ? "decided on the GPU" : "decided on the host";
  gpuTest(
    `dbcache on two streams (${mode}): the image's F residual decides; a cached step replays each stream's M`,
    async (ctx) => {
      // The image's F residual is the same every step (diff 0: cached at 0.1) while its M and B residuals
      // change; the text stream changes completely every step and still caches, replaying step 0's M.
      const [h, r0] = [dyadic(SIZE, 100), dyadic(SIZE, 101)];
      const images = [0, 1, 2].map((s) => [r0, ...[1, 2, 3].map((i) => dyadic(SIZE, 110 + 10 * s + i))]);
      const texts = [0, 1, 2].map((s) => text(200 + 10 * s));
      const scripts = [0, 1, 2].map((s) => ({ hidden: h, residuals: images[s], text: texts[s] }));
      const r = await run(
        ctx,
        { strategy: "dbcache", Fn: 1, Bn: 1, residual_diff_threshold: 0.1 },
        scripts,
        path,
      );
      assert.deepEqual(r.stats.cachedSteps, [1, 2]);
      assert.deepEqual(r.stats.diffs, [null, 0, 0]);
      const [m, mt] = [add(images[0][1], images[0][2]), add(texts[0].residuals[1], texts[0].residuals[2])];
      for (const s of [1, 2]) {
        assert.deepEqual(r.outputs[s], add(h, r0, m, images[s][3]), `image, step ${s}`);
        const t = texts[s];
        assert.deepEqual(r.texts[s], add(t.hidden, t.residuals[0], mt, t.residuals[3]), `text, step ${s}`);
      }
      assert.equal(
        r.stats.memoryBytes,
        (4 * SIZE + 2 * TEXT_SIZE) * 4,
        "R_F, R_F*, M's input + residual per stream",
      );
      assert.equal(r.stats.readbacks, path === "gpu" ? 1 : 2);
    },
  );

  for (const cacheType of ["residual", "hidden_states"]) {
    gpuTest(
      `dbcache + TaylorSeer (${cacheType}) on two streams (${mode}): the text stream is extrapolated only with the encoder calibrator`,
      async (ctx) => {
        // M's residual grows linearly on both streams: a first-order TaylorSeer predicts 3m and 4m at steps 2
        // and 3; without the encoder calibrator the text stream replays the 2m of step 1.
        const [h, r0, r3, m] = [300, 301, 302, 303].map((seed) => dyadic(SIZE, seed));
        const t = text(400);
        const mt = dyadic(TEXT_SIZE, 410);
        const scripts = [0, 1, 2, 3].map((s) => ({
          hidden: h,
          residuals: [r0, scale(m, s + 1), scale(m, s + 1), r3],
          text: {
            hidden: t.hidden,
            residuals: [t.residuals[0], scale(mt, s + 1), scale(mt, s + 1), t.residuals[3]],
          },
        }));
        for (const encoder of [true, false]) {
          const r = await run(
            ctx,
            {
              strategy: "dbcache",
              Fn: 1,
              Bn: 1,
              residual_diff_threshold: 10,
              max_warmup_steps: 2,
              enable_taylorseer: true,
              enable_encoder_taylorseer: encoder,
              taylorseer_cache_type: cacheType,
            },
            scripts,
            path,
          );
          assert.deepEqual(r.stats.cachedSteps, [2, 3]);
          for (const s of [2, 3]) {
            assert.deepEqual(r.outputs[s], add(h, r0, m.map((v) => v * (s + 1)), r3), `image, step ${s}`);
            const k = encoder ? s + 1 : 2;
            const expected = add(t.hidden, t.residuals[0], mt.map((v) => v * k), t.residuals[3]);
            assert.deepEqual(r.texts[s], expected, `encoder ${encoder}, text, step ${s}`);
          }
          // DBCache's tensors, then d_cur and d_prev of orders 0 and 1 per calibrated stream.
          const seers = 4 * SIZE + (encoder ? 4 * TEXT_SIZE : 0);
          assert.equal(r.stats.memoryBytes, (4 * SIZE + 2 * TEXT_SIZE + seers) * 4, `encoder ${encoder}`);
          assert.deepEqual(r.stats.notes, [], "no encoder note on a model with a text stream");
        }
      },
    );
  }

  gpuTest(
    `dbprune on two streams (${mode}): the image input decides; a pruned block replays each stream's residual`,
    async (ctx) => {
      // Step 1 moves the image input by 1/64 on half its values (diff ~0.02: blocks 1 and 2 prune at 0.1)
      // and the text input by 1 everywhere; both streams replay step 0's residuals of the pruned blocks.
      const h0 = dyadic(SIZE, 500);
      const h1 = h0.map((v, i) => (i % 2 === 0 ? v + 1 / 64 : v));
      const r = [0, 1, 2, 3].map((i) => dyadic(SIZE, 510 + i));
      const t0 = text(600);
      const t1 = { hidden: t0.hidden.map((v) => v + 1), residuals: text(620).residuals };
      const scripts = [{ hidden: h0, residuals: r, text: t0 }, { hidden: h1, residuals: r, text: t1 }];
      const out = await run(
        ctx,
        { strategy: "dbprune", Fn: 1, Bn: 1, residual_diff_threshold: 0.1 },
        scripts,
        path,
      );
      assert.deepEqual(out.stats.prunedBlocks, [0, 2]);
      assert.deepEqual(out.outputs[1], add(h1, ...r));
      const replayed = add(t1.hidden, t1.residuals[0], t0.residuals[1], t0.residuals[2], t1.residuals[3]);
      assert.deepEqual(out.texts[1], replayed, "text: step 0's residuals of blocks 1 and 2");
      assert.equal(
        out.stats.memoryBytes,
        2 * 2 * (SIZE + TEXT_SIZE) * 4,
        "input + residual per stream and block",
      );
    },
  );
}

for (const path of DECISION_PATHS) {
  gpuTest(
    `dbcache Bn_compute_blocks_ids on two streams (${path}): an unlisted B block is judged on its image input and replays both`,
    async (ctx) => {
      // Step 1 keeps the image input (block 3's image input moves by block 0's and 2's new residuals only) and
      // replaces the text stream; block 3 replays its stored residual on both streams when judged similar.
      const h = dyadic(SIZE, 700);
      const images = [0, 1].map((s) => [0, 1, 2, 3].map((i) => dyadic(SIZE, 710 + 10 * s + i)));
      const texts = [text(800), text(820)];
      const scripts = [0, 1].map((s) => ({ hidden: h, residuals: images[s], text: texts[s] }));
      const base = {
        strategy: "dbcache",
        Fn: 1,
        Bn: 2,
        Bn_compute_blocks_ids: [0],
        residual_diff_threshold: 10,
      };
      const [i0, i1, t0, t1] = [images[0], images[1], texts[0].residuals, texts[1].residuals];
      const replay = await run(ctx, { ...base, non_compute_blocks_diff_threshold: 10 }, scripts, path);
      assert.deepEqual(replay.reports.map((x) => x.blocksRun), [4, 2]);
      assert.deepEqual(replay.outputs[1], add(h, i1[0], i0[1], i1[2], i0[3]));
      assert.deepEqual(
        replay.texts[1],
        add(texts[1].hidden, t1[0], t0[1], t1[2], t0[3]),
        "text: block 3 replays",
      );
      const ran = await run(ctx, { ...base, non_compute_blocks_diff_threshold: 0 }, scripts, path);
      assert.deepEqual(ran.texts[1], add(texts[1].hidden, t1[0], t0[1], t1[2], t1[3]), "text: block 3 runs");
    },
  );
}

gpuTest(
  "two streams with TaylorSeer on both: the GPU takes the host's decisions, outputs within f32 weight rounding",
  async (ctx) => {
    // DBCache: F adds drift[step] everywhere (the diffs of tests/cache/dbcache_test.ts), M and B change
    // every step. DBPrune: the input creeps by s/64 on a quarter of the values, every block changes.
    const drift = [1, 1.04, 1.02, 1.3, 1.31, 1.2, 1.32, 1.33, 1.34, 1.5];
    const base = dyadic(SIZE, 900);
    const random = (s: number) => [1, 2, 3].map((b) => randn(SIZE, 910 + 10 * s + b, 0.2));
    const dbcacheScripts = drift.map((d, s) => ({
      hidden: base,
      residuals: [new Float32Array(SIZE).fill(d), ...random(s)],
    }));
    const dbpruneScripts = drift.map((_, s) => ({
      hidden: base.map((v, i) => (i % 4 === 0 ? v + s / 64 : v)),
      residuals: [randn(SIZE, 990 + s, 0.2), ...random(s)],
    }));
    const calibrated = { enable_taylorseer: true, enable_encoder_taylorseer: true, n_derivatives: 2 };
    const cases: [Record<string, unknown>, StepScript[]][] = [
      [{ strategy: "dbcache", Fn: 1, Bn: 1, residual_diff_threshold: 0.1, ...calibrated }, dbcacheScripts],
      [{ strategy: "dbprune", Fn: 0, Bn: 0, residual_diff_threshold: 0.3, ...calibrated }, dbpruneScripts],
    ];
    for (const [options, scripts] of cases) {
      const host = await run(ctx, options, scripts, "readback");
      const gpu = await run(ctx, options, scripts, "gpu");
      const what = JSON.stringify(options);
      assert.ok(host.stats.cachedSteps.length >= 3, `${what} caches`);
      assert.deepEqual(gpu.stats.cachedSteps, host.stats.cachedSteps, what);
      assert.deepEqual(gpu.stats.gates, host.stats.gates, what);
      // The kernel computes 1/w and k^i/i! in f32, the host in f64 (tests/cache/dbcache_test.ts).
      for (
        const [stream, got, want] of [["image", gpu.outputs, host.outputs], [
          "text",
          gpu.texts,
          host.texts,
        ]] as const
      ) {
        got.forEach((o, step) =>
          assertClose(o, want[step], { atol: 2e-5, rtol: 2e-5 }, `${what} ${stream} ${step}`)
        );
      }
      assert.equal(gpu.stats.readbacks, 1, `${what}: only the log, after the run`);
    }
  },
);

gpuTest(
  "enable_encoder_taylorseer is noted where no block reads the text stream it predicts",
  async (ctx) => {
    const options = { strategy: "dbcache", Fn: 1, enable_taylorseer: true, enable_encoder_taylorseer: true };
    const cases = [
      [oneStream, 0, [ENCODER_NOTE]],
      [twoStreamBlocks, 0, [ENCODER_UNREAD_NOTE]],
      [twoStreamBlocks, 1, []],
    ] as const;
    for (const [fakes, Bn, notes] of cases) {
      const fake = fakes(ctx, BLOCKS);
      const s = strategy(ctx, { ...options, Bn }, BLOCKS, 1, "gpu");
      await drive(ctx, s, fake, [{
        hidden: dyadic(SIZE, 1),
        residuals: [2, 3, 4, 5].map((i) => dyadic(SIZE, i)),
      }]);
      assert.deepEqual(s.stats().notes, notes);
      s.release();
      fake.release();
    }
  },
);
