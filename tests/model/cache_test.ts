// Cache strategies on the real model: threshold 0 is the uncached run bit for bit, and a cached run of F1B0
// skips steps and still draws the asked digit; a static mask with TaylorSeer and DBPrune keep it too.
import assert from "node:assert/strict";
import { createStrategy } from "../../src/cache/create.ts";
import { resolveCacheOptions } from "../../src/cache/options.ts";
import { scmMask } from "../../src/cache/scm.ts";
import { DigitClassifier } from "../../src/model/classifier.ts";
import { loadMnist, mnistRequest } from "../support/mnist.ts";
import { gpuTest } from "../support/gpu.ts";

gpuTest("dbcache F8B0 with threshold 0 equals the uncached model bit for bit", async (ctx) => {
  const model = await loadMnist(ctx);
  const request = { labels: [5], steps: 6, seed: 3, guidance: 2 };
  const plain = await model.run(mnistRequest(model, request));
  const options = resolveCacheOptions({
    strategy: "dbcache",
    residual_diff_threshold: 0,
    max_warmup_steps: 0,
  }, {
    blocks: model.card.blocks,
    steps: request.steps,
    channels: model.card.streamWidth,
  });
  const strategy = createStrategy(ctx, options);
  const cached = await model.run(mnistRequest(model, request), { strategy });
  assert.deepEqual(cached.cache.cachedSteps, []);
  assert.deepEqual(cached.images, plain.images);
  strategy.release();
  model.release();
});

gpuTest("fbcache (F1B0) at threshold 0.2 caches steps and still yields all ten asked digits", async (ctx) => {
  const model = await loadMnist(ctx);
  const classifier = await DigitClassifier.load(ctx);
  const request = { labels: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], steps: 28, seed: 7, guidance: 3 };
  const options = resolveCacheOptions({ strategy: "fbcache", residual_diff_threshold: 0.2 }, {
    blocks: model.card.blocks,
    steps: request.steps,
    channels: model.card.streamWidth,
  });
  const strategy = createStrategy(ctx, options);
  const result = await model.run(mnistRequest(model, request), { strategy });
  assert.ok(result.cache.cachedSteps.length >= 4, `cached steps ${result.cache.cachedSteps}`);
  assert.ok(result.cache.blocksExecuted < result.cache.blocksTotal);
  assert.deepEqual((await classifier.classify(result.images)).predicted, request.labels);
  strategy.release();
  classifier.release();
  model.release();
});

gpuTest(
  "static SCM + TaylorSeer caches exactly the mask's 0 steps with no readback but the image's; digits hold",
  async (ctx) => {
    const model = await loadMnist(ctx);
    const classifier = await DigitClassifier.load(ctx);
    const request = { labels: [3, 8], steps: 14, seed: 4, guidance: 3 };
    const options = resolveCacheOptions({
      strategy: "dbcache",
      Fn: 1,
      Bn: 0,
      steps_computation_mask: "fast",
      steps_computation_policy: "static",
      max_warmup_steps: 0,
      enable_taylorseer: true,
    }, { blocks: model.card.blocks, steps: request.steps, channels: model.card.streamWidth });
    const strategy = createStrategy(ctx, options);
    const result = await model.run(mnistRequest(model, request), { strategy });
    const mask = scmMask("fast", request.steps);
    assert.deepEqual(result.cache.cachedSteps, mask.flatMap((m, s) => m === 0 ? [s] : []));
    assert.equal(result.readbacks, 1, "only the final image leaves the GPU");
    assert.deepEqual((await classifier.classify(result.images)).predicted, request.labels);
    strategy.release();
    classifier.release();
    model.release();
  },
);

gpuTest("dbprune F1B0 at 0.2 prunes blocks after warmup and the digits hold", async (ctx) => {
  const model = await loadMnist(ctx);
  const classifier = await DigitClassifier.load(ctx);
  const request = { labels: [2, 7], steps: 14, seed: 5, guidance: 3 };
  const options = resolveCacheOptions(
    { strategy: "dbprune", Fn: 1, Bn: 0, residual_diff_threshold: 0.2, max_warmup_steps: 4 },
    { blocks: model.card.blocks, steps: request.steps, channels: model.card.streamWidth },
  );
  const strategy = createStrategy(ctx, options);
  const result = await model.run(mnistRequest(model, request), { strategy });
  const pruned = (result.cache.prunedBlocks ?? []).reduce((a, b) => a + b, 0);
  assert.ok(pruned > 0, `pruned per step ${result.cache.prunedBlocks}`);
  assert.equal(result.cache.blocksTotal - result.cache.blocksExecuted, pruned);
  assert.deepEqual(result.cache.prunedBlocks!.slice(0, 4), [0, 0, 0, 0], "warmup prunes nothing");
  assert.deepEqual((await classifier.classify(result.images)).predicted, request.labels);
  strategy.release();
  classifier.release();
  model.release();
});
