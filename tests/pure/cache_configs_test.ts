// deno task bench's configuration sets: the one-stream rows of BENCHMARKS.md at 28 steps, the two-stream FLUX
// rows scaled to the block list (mnist-flux's 6 blocks, FLUX.1's 57), and step masks that follow the run's
// steps; every row is a valid request at the step counts a run uses.
import assert from "node:assert/strict";
import {
  BENCH_CONFIGS,
  benchConfigs,
  customComputed,
  scaledSplit,
} from "../../src/cli/bench/cache_configs.ts";
import { resolveCacheOptions } from "../../src/cache/options.ts";

const names = (configs: { name: string }[]) => configs.map((c) => c.name);

Deno.test("bench configs: FLUX.1's F8B8 and F12B12 scaled by their share of blocks outside the cached span", () => {
  assert.deepEqual(scaledSplit(8, 57), [8, 8]);
  assert.deepEqual(scaledSplit(12, 57), [12, 12]);
  assert.deepEqual(scaledSplit(8, 6), [1, 1]);
  assert.deepEqual(scaledSplit(12, 6), [1, 2]);
  const six = names(benchConfigs({ pipeline: "FluxPipeline", blocks: 6 }, 20));
  assert.ok(six.includes("F8B8 (0.15) as F1B1") && six.includes("F12B12 (0.20) as F1B2"));
  const full = names(benchConfigs({ pipeline: "FluxPipeline", blocks: 57 }, 28));
  assert.ok(full.includes("F8B8 (0.15)") && full.includes("F12B12 (0.20)"));
});

Deno.test("bench configs: the custom mask is the hand-picked 6/28 at 28 steps and scales to others", () => {
  assert.deepEqual(customComputed(28), [0, 1, 2, 5, 10, 17]);
  assert.deepEqual(customComputed(20), [0, 1, 2, 4, 7, 12]);
  assert.deepEqual(customComputed(4), [0, 1, 2, 3]);
  const custom = BENCH_CONFIGS.find((c) => c.name === "F1B0 + custom SCM 6/28 (static) + TaylorSeer");
  assert.ok(custom?.tuned);
  assert.deepEqual(
    custom.cache.steps_computation_mask,
    Array.from({ length: 28 }, (_, i) => Number([0, 1, 2, 5, 10, 17].includes(i))),
  );
});

Deno.test("bench configs: every row of either set resolves, with unique names, at the run's steps", () => {
  const models = [
    { pipeline: "MnistDiT", blocks: 12, channels: 192 },
    { pipeline: "FluxPipeline", blocks: 6, channels: 128 },
  ];
  for (const model of models) {
    for (const steps of [4, 8, 20, 28]) {
      const configs = benchConfigs(model, steps);
      assert.equal(new Set(names(configs)).size, configs.length);
      assert.equal(configs[0].name, "Baseline");
      assert.ok(configs.some((c) => c.name.startsWith("decision only")));
      let masks = 0;
      for (const config of configs) {
        const resolved = resolveCacheOptions(config.cache, { ...model, steps });
        const mask = (resolved as { mask?: unknown[] | null }).mask;
        if (mask) assert.equal(mask.length, steps, `${config.name} at ${steps} steps`);
        if (mask) masks++;
      }
      assert.ok(masks >= 4);
    }
  }
  const flux = benchConfigs({ pipeline: "FluxPipeline", blocks: 6 }, 20);
  const encoder = flux.filter((c) => c.cache.enable_encoder_taylorseer);
  // The text stream is read only by B: the encoder calibrator is compared where Bn > 0.
  assert.ok(encoder.length >= 2 && encoder.every((c) => (c.cache.Bn as number) > 0));
});
