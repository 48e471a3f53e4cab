// Every cache strategy runs on a DiTPipeline exactly as on the embedded model, through the same seam: a
// threshold of 0 is the uncached run bit for bit, a threshold above every diff (random weights drift by up to ~10x) caches after warmup, and the
// GPU-decided run (nobody watching per step) takes the host-decided run's decisions and gives its image.
import assert from "node:assert/strict";
import { createStrategy } from "../../src/cache/create.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { loadPipeline } from "../../src/pipeline/pipelines/load.ts";
import { resolveRequest } from "../../src/pipeline/request.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "tests/fixtures/diffusers/dit-pipeline";

const CONFIGS: [string, Record<string, unknown>, number[]][] = [
  ["dbcache F1B0 threshold 0", {
    strategy: "dbcache",
    Fn: 1,
    Bn: 0,
    residual_diff_threshold: 0,
    max_warmup_steps: 0,
  }, []],
  ["fbcache threshold 10", {
    strategy: "fbcache",
    residual_diff_threshold: 10,
    max_warmup_steps: 2,
    max_cached_steps: -1,
  }, [2, 3, 4, 5]],
  ["dbprune threshold 1000", {
    strategy: "dbprune",
    Fn: 0,
    Bn: 0,
    residual_diff_threshold: 1000,
    max_warmup_steps: 2,
  }, [2, 3, 4, 5]],
  [
    "static mask + TaylorSeer",
    {
      strategy: "dbcache",
      Fn: 1,
      Bn: 0,
      steps_computation_mask: [1, 1, 0, 1, 0, 0],
      steps_computation_policy: "static",
      max_warmup_steps: 0,
      enable_taylorseer: true,
    },
    [2, 4, 5],
  ],
];

for (const [name, cache, cachedSteps] of CONFIGS) {
  gpuTest(
    `DiTPipeline under ${name}: cached steps ${JSON.stringify(cachedSteps)}, decided alike on host and GPU`,
    async (ctx) => {
      const card = await readModelCard(DIR);
      const pipeline = await loadPipeline(ctx, card);
      const request = resolveRequest(card, {
        labels: [207],
        steps: 6,
        guidance: 4,
        seed: 3,
        shift: 1,
        eta: 0,
        cache,
      });
      const plain = await pipeline.run({ ...request, cache: { strategy: "none", notes: [] } });
      const run = async (watched: boolean) => {
        const strategy = createStrategy(ctx, request.cache);
        try {
          return await pipeline.run(request, { strategy, onStep: watched ? () => {} : undefined });
        } finally {
          strategy.release();
        }
      };
      const [host, gpu] = [await run(true), await run(false)];
      assert.deepEqual(host.cache.cachedSteps, cachedSteps);
      assert.deepEqual(gpu.cache.cachedSteps, cachedSteps);
      assert.deepEqual(gpu.images, host.images, "GPU-decided and host-decided runs give the same image");
      if (cachedSteps.length === 0) {
        assert.deepEqual(host.images, plain.images, "nothing cached: the uncached image");
      } else assert.notDeepEqual(host.images, plain.images);
      assert.ok(host.images.every(Number.isFinite));
      pipeline.release();
    },
  );
}
