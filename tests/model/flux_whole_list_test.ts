// The whole-list strategies on the tiny FluxPipeline of tests/fixtures/flux-cache, from the same latents and
// embeddings as their references: MagCache against diffusers' own hooks (tools/magcache_fixtures.py: the
// magnitude ratios `deno task calibrate` records against the ones diffusers' calibration prints, then, from
// diffusers' ratios, the steps each setting skipped and the images), TeaCache against the authors'
// TeaCache4FLUX rule around diffusers' forward (tools/teacache_fixtures.py: the skipped steps and images).
import assert from "node:assert/strict";
import { CalibrationRecorder } from "../../src/cache/calibration_recorder.ts";
import { createStrategy } from "../../src/cache/create.ts";
import type { CacheStrategy } from "../../src/cache/strategy.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { toUnitHwc } from "../../src/pipeline/image.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { FluxPipeline } from "../../src/pipeline/pipelines/flux.ts";
import { resolveRequest } from "../../src/pipeline/request.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture, runSettings } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "tests/fixtures/flux-cache";
const inputs = await readFixture(`${DIR}/runs.safetensors`);
const magcache = await readFixture(`${DIR}/magcache.safetensors`);
const ratios: number[] = JSON.parse(magcache.metadata.ratios);
const teacache = await readFixture(`${DIR}/teacache.safetensors`);

// Each ratio is a mean over tokens of two residual norms' quotient; the residuals agree with torch's to the
// transformer's per-stage rounding (tests/model/flux_transformer_test.ts), so the quotients to ~1e-4.
const RATIO_TOL = { atol: 5e-4, rtol: 0 };
// Pixels in [0, 1], as tests/model/flux_cache_test.ts: the uncached run agrees to 2.8e-5.
const IMAGE_TOL = { atol: 2e-4, rtol: 0 };

let loaded: Promise<FluxPipeline> | undefined;
const pipeline = (ctx: GpuContext) =>
  loaded ??= readModelCard(`${DIR}/pipeline`).then((card) => {
    if (card.pipeline !== "FluxPipeline") throw new Error(`${DIR}/pipeline is a ${card.pipeline}`);
    return FluxPipeline.load(ctx, card);
  });

async function run(ctx: GpuContext, cache: Record<string, unknown>, strategy?: CacheStrategy) {
  const p = await pipeline(ctx);
  const request = resolveRequest(p.card, {
    embeddings: { images: 1, negative: false },
    ...runSettings(inputs),
    seed: 0,
    shift: 1,
    eta: 0,
    cache,
  });
  const used = strategy ?? createStrategy(ctx, request.cache);
  try {
    const embeddings = Object.fromEntries(
      ["prompt_embeds", "pooled_prompt_embeds"].map((name) => [name, inputs.tensors.get(name)!]),
    );
    const result = await p.run(request, {
      strategy: used,
      latents: fixtureTensor(inputs, "latents"),
      embeddings,
    });
    return { images: toUnitHwc(result.images, result.shape), cache: result.cache };
  } finally {
    if (!strategy) used.release();
  }
}

gpuTest("calibrate records diffusers' MagCache magnitude ratios on the tiny FLUX pipeline", async (ctx) => {
  const recorder = new CalibrationRecorder(ctx);
  try {
    await run(ctx, { strategy: "none" }, recorder);
    const got = recorder.figures()!.magRatios;
    assert.equal(got.length, ratios.length);
    assertClose(got, ratios, RATIO_TOL, "mag_ratios");
  } finally {
    recorder.release();
  }
});

for (
  const [strategy, fixture, extra] of [["magcache", magcache, { mag_ratios: ratios }], [
    "teacache",
    teacache,
    {},
  ]] as const
) {
  const settings: Record<string, Record<string, unknown>> = JSON.parse(fixture.metadata.settings);
  const skipped: Record<string, number[]> = JSON.parse(fixture.metadata.skipped);
  for (const [name, setting] of Object.entries(settings)) {
    gpuTest(`${strategy} ${name} skips the steps its reference skips, with its images`, async (ctx) => {
      const { images, cache } = await run(ctx, { strategy, ...setting, ...extra });
      assert.deepEqual(cache.cachedSteps, skipped[name]);
      assertClose(images, fixtureTensor(fixture, `${name}.images`), IMAGE_TOL, `${name} images`);
    });
  }
}
