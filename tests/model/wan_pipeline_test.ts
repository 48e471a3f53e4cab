// A whole tiny WanPipeline run against diffusers' from the same latents and embeddings
// (tools/wan_pipeline_fixtures.py): UniPC with Wan2.1's config, FlowMatchEuler in its place, and DBCache with
// separate CFG caches against cache-dit on the same pipeline: the steps each branch cached, the diffs it
// measured, and the video. The settings, in our option names, come from the fixture's header.
import assert from "node:assert/strict";
import { createStrategy } from "../../src/cache/create.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { WanPipeline } from "../../src/pipeline/pipelines/wan.ts";
import { resolveRequest } from "../../src/pipeline/request.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "tests/fixtures/wan";
const fixture = await readFixture(`${DIR}/pipeline-run.safetensors`);
const settings: Record<string, Record<string, unknown>> = JSON.parse(fixture.metadata.settings);
const results: Record<string, CacheDitResult> = JSON.parse(fixture.metadata.results);
const STEPS = Number(fixture.metadata.num_inference_steps);

interface CacheDitResult {
  cached_steps: number[];
  residual_diffs: (number | null)[];
  cfg_cached_steps: number[];
  cfg_residual_diffs: (number | null)[];
}

// f32 on both sides; diffs are ratios of means over the image stream, kept >= 0.002 from every threshold by
// the fixture script, so no decision can flip within this tolerance.
const DIFF_TOL = 1e-4;
// Pixels in [0, 1] after 12 UniPC steps and the Wan VAE.
const VIDEO_TOL = { atol: 2e-4, rtol: 0 };

let loaded: Promise<WanPipeline> | undefined;
const pipeline = (ctx: GpuContext) =>
  loaded ??= readModelCard(`${DIR}/pipeline`).then((card) => {
    if (card.pipeline !== "WanPipeline") throw new Error(`${DIR}/pipeline is a ${card.pipeline}`);
    return WanPipeline.load(ctx, card);
  });

/** The run's frames as diffusers' np video [1, T, H, W, 3] in [0, 1]. */
function unitVideo(frames: Float32Array, shape: readonly number[]): Float32Array {
  const [count, channels, height, width] = shape;
  const out = new Float32Array(frames.length);
  for (let t = 0; t < count; t++) {
    for (let c = 0; c < channels; c++) {
      for (let i = 0; i < height * width; i++) {
        const v = frames[(t * channels + c) * height * width + i];
        out[(t * height * width + i) * channels + c] = Math.min(1, Math.max(0, v / 2 + 0.5));
      }
    }
  }
  return out;
}

async function run(
  ctx: GpuContext,
  cache: Record<string, unknown>,
  options: { sampler?: string; watched?: boolean },
) {
  const p = await pipeline(ctx);
  const request = resolveRequest(p.card, {
    embeddings: { images: 1, negative: true },
    size: `${fixture.metadata.width}x${fixture.metadata.height}`,
    frames: Number(fixture.metadata.num_frames),
    steps: STEPS,
    guidance: Number(fixture.metadata.guidance_scale),
    seed: 0,
    shift: 1,
    eta: 0,
    cache,
    ...(options.sampler ? { sampler: options.sampler } : {}),
  });
  const strategy = createStrategy(ctx, request.cache);
  try {
    const embeddings = Object.fromEntries(
      ["prompt_embeds", "negative_prompt_embeds"].map((name) => [name, fixture.tensors.get(name)!]),
    );
    const result = await p.run(request, {
      strategy,
      latents: fixtureTensor(fixture, "latents"),
      embeddings,
      ...(options.watched ? { onStep() {} } : {}),
    });
    return { video: unitVideo(result.images, result.shape), cache: result.cache, shape: result.shape };
  } finally {
    strategy.release();
  }
}

function assertDiffs(ours: (number | null)[], theirs: (number | null)[], branch: string): void {
  for (let s = 0; s < STEPS; s++) {
    assert.equal(ours[s] === null, theirs[s] === null, `${branch} step ${s}: measured where cache-dit did`);
    if (ours[s] === null) continue;
    const error = Math.abs(ours[s]! - theirs[s]!);
    assert.ok(error <= DIFF_TOL, `${branch} step ${s}: diff ${ours[s]} vs cache-dit ${theirs[s]} (${error})`);
  }
}

gpuTest("WanPipeline (UniPC, separate CFG passes) gives diffusers' frames", async (ctx) => {
  const plain = await run(ctx, { strategy: "none" }, {});
  assert.deepEqual(plain.shape.slice(0, 2), [Number(fixture.metadata.num_frames), 3]);
  assertClose(plain.video, fixtureTensor(fixture, "none.video"), VIDEO_TOL, "uncached video");
});

gpuTest("WanPipeline with FlowMatchEuler on its flow_shift gives diffusers' frames", async (ctx) => {
  const euler = await run(ctx, { strategy: "none" }, { sampler: "FlowMatchEulerDiscreteScheduler" });
  assertClose(
    euler.video,
    fixtureTensor(fixture, "flow-match-euler.video"),
    VIDEO_TOL,
    "FlowMatchEuler video",
  );
});

for (const [name, cache] of Object.entries(settings)) {
  for (const watched of name === "F1B1-mid" || name === "F1B0-shared-diff" ? [false, true] : [false]) {
    const how = watched ? "decided on the host" : "decided on the GPU";
    gpuTest(`WanPipeline under ${name} (${how}) caches cache-dit's steps per CFG branch`, async (ctx) => {
      const theirs = results[name];
      const ours = await run(ctx, cache, { watched });
      assert.deepEqual(ours.cache.cachedSteps, theirs.cached_steps, "conditional branch's cached steps");
      assert.deepEqual(
        ours.cache.cfg?.cachedSteps,
        theirs.cfg_cached_steps,
        "unconditional branch's cached steps",
      );
      assertDiffs(ours.cache.diffs, theirs.residual_diffs, "conditional");
      assertDiffs(ours.cache.cfg!.diffs, theirs.cfg_residual_diffs, "unconditional");
      assertClose(ours.video, fixtureTensor(fixture, `${name}.video`), VIDEO_TOL, `${name} video`);
    });
  }
}
