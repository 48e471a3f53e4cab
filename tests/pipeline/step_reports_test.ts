// onStep (the server's stream, the CLI's progress bar) against a plain run, on the DiTPipeline fixture: it is
// called with every step's report, in step order, at most one step behind the loop, and the same reports
// as the run returns; giving it changes nothing the strategy decides or draws. Every DBCache and DBPrune
// setting runs on both decision paths, which must agree with each other too.
import assert from "node:assert/strict";
import { createStrategy } from "../../src/cache/create.ts";
import { DECISION_PATHS, type DecisionPath } from "../../src/cache/decision_path.ts";
import type { CacheStrategy, ForwardInfo } from "../../src/cache/strategy.ts";
import type { StepEvent } from "../../src/pipeline/generate.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { loadPipeline } from "../../src/pipeline/pipelines/load.ts";
import { resolveRequest } from "../../src/pipeline/request.ts";
import type { BlockList } from "../../src/cache/strategy.ts";
import type { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "tests/fixtures/diffusers/dit-pipeline";
const STEPS = 6;

/**
 * The fixture has two blocks: F1B0 skips block 1; F1B1 judges block 1 alone (Bn_compute_blocks_ids []).
 * One warmup step: from step 1 on the decisions are the GPU's, made before the previous step's log is read.
 */
const SETTINGS: [string, Record<string, unknown>][] = [
  ["dbcache F1B0", { strategy: "dbcache", Fn: 1, Bn: 0, residual_diff_threshold: 10, max_warmup_steps: 1 }],
  ["dbcache F1B1, B judged per block", {
    strategy: "dbcache",
    Fn: 1,
    Bn: 1,
    Bn_compute_blocks_ids: [],
    non_compute_blocks_diff_threshold: 0.5,
    residual_diff_threshold: 10,
    max_warmup_steps: 1,
  }],
  ["dbprune F0B0", { strategy: "dbprune", Fn: 0, Bn: 0, residual_diff_threshold: 1000, max_warmup_steps: 1 }],
];

/** Counts the loop's forwards, so that onStep can tell how far ahead the loop is when it is called. */
class Counted implements CacheStrategy {
  forwards = 0;
  constructor(private readonly inner: CacheStrategy) {}
  get name() {
    return this.inner.name;
  }
  forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder) {
    this.forwards++;
    return this.inner.forward(info, list, recorder);
  }
  settle(recorder: StepRecorder) {
    return this.inner.settle(recorder);
  }
  memoryBytes() {
    return this.inner.memoryBytes();
  }
  stats() {
    return this.inner.stats();
  }
  release() {
    this.inner.release();
  }
}

for (const [name, cache] of SETTINGS) {
  gpuTest(
    `onStep under ${name}: every report, in order, one step behind at most, decisions unchanged`,
    async (ctx) => {
      const card = await readModelCard(DIR);
      const pipeline = await loadPipeline(ctx, card);
      const request = resolveRequest(card, {
        labels: [207],
        steps: STEPS,
        guidance: 4,
        seed: 3,
        shift: 1,
        eta: 0,
        cache,
      });
      const run = async (path: DecisionPath, watched: boolean) => {
        const strategy = new Counted(createStrategy(ctx, request.cache, path));
        const events: StepEvent[] = [];
        const onStep = (e: StepEvent) => {
          // Step e.step is reported before step e.step + 2 is forwarded.
          assert.ok(
            strategy.forwards <= e.step + 2,
            `step ${e.step} reported after ${strategy.forwards} forwards`,
          );
          events.push(e);
        };
        try {
          const result = await pipeline.run(request, { strategy, ...(watched ? { onStep } : {}) });
          return { result, events };
        } finally {
          strategy.release();
        }
      };
      const runs = [];
      for (const path of DECISION_PATHS) {
        const plain = await run(path, false);
        const watched = await run(path, true);
        assert.deepEqual(watched.events, watched.result.steps, `${path}: onStep got the run's reports`);
        assert.deepEqual(
          watched.events.map((e) => e.step),
          [...Array(STEPS).keys()],
          `${path}: in step order`,
        );
        assert.deepEqual(
          watched.result.steps,
          plain.result.steps,
          `${path}: the same reports without onStep`,
        );
        const { readbacks: _w, ...watchedStats } = watched.result.cache;
        const { readbacks: _p, ...plainStats } = plain.result.cache;
        assert.deepEqual(watchedStats, plainStats, `${path}: the same decisions without onStep`);
        assert.deepEqual(
          watched.result.images,
          plain.result.images,
          `${path}: the same image without onStep`,
        );
        assert.equal(plain.result.cache.decisions, path);
        runs.push(plain.result);
      }
      const [gpu, readback] = runs;
      assert.ok(gpu.cache.cachedSteps.length > 0, `${name} caches: ${gpu.cache.cachedSteps}`);
      assert.deepEqual(gpu.steps, readback.steps, "both paths report the same steps");
      assert.deepEqual(gpu.images, readback.images, "both paths draw the same image");
      assert.equal(gpu.cache.readbacks, 1, "the GPU path reads its log once when nobody watches");
      pipeline.release();
    },
  );
}
