// FluxPipeline under DBCache, DBPrune, TaylorSeer and step masks against cache-dit on the same tiny pipeline
// from the same latents and embeddings (tools/flux_cache_fixtures.py): the steps cache-dit cached (the blocks
// it pruned), the residual diff it measured at each step, and its images. FLUX's blocks update two token
// streams, so a skipped span must replay the text stream's residual too: wherever blocks run after it (Bn > 0,
// DBPrune), a stale text stream changes every later block and the image. The settings, in our option names,
// come from the fixture's header, so both sides run exactly the same thing.
import assert from "node:assert/strict";
import { createStrategy } from "../../src/cache/create.ts";
import type { CacheStats } from "../../src/cache/strategy.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { toUnitHwc } from "../../src/pipeline/image.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { FluxPipeline } from "../../src/pipeline/pipelines/flux.ts";
import { resolveRequest } from "../../src/pipeline/request.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture, runSettings } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "tests/fixtures/flux-cache";
const fixture = await readFixture(`${DIR}/runs.safetensors`);
const settings: Record<string, Record<string, unknown>> = JSON.parse(fixture.metadata.settings);
const results: Record<string, CacheDitResult> = JSON.parse(fixture.metadata.results);

interface CacheDitResult {
  cached_steps: number[];
  /** Per step: DBCache's diff, DBPrune's list of judged block diffs; null where nothing was measured. */
  residual_diffs: (number | number[] | null)[];
  pruned_blocks?: number[];
}

// f32 on both sides from the same BF16 weights. A diff is a ratio of two means over the image stream: ours
// and torch's agree to 1.5e-5 at worst over every step of every run here, the per-stage rounding of
// tests/model/flux_transformer_test.ts carried along 14 steps. The fixture keeps every diff at least 0.002
// from its threshold, so no decision can flip within this tolerance.
const DIFF_TOL = 1e-4;
// Pixels in [0, 1] after 14 steps and the VAE: 3.3e-5 at worst over all runs (2.8e-5 uncached), so the cache
// adds nothing measurable. The encoder calibrator moves pixels by 1.4e-2 (tools/flux_cache_fixtures.py checks
// it); a text stream left stale on cached steps moves the later diffs by 2e-4 to 2e-3 and pixels by ~1e-2.
const IMAGE_TOL = { atol: 2e-4, rtol: 0 };

let loaded: Promise<FluxPipeline> | undefined;
const pipeline = (ctx: GpuContext) =>
  loaded ??= readModelCard(`${DIR}/pipeline`).then((card) => {
    if (card.pipeline !== "FluxPipeline") throw new Error(`${DIR}/pipeline is a ${card.pipeline}`);
    return FluxPipeline.load(ctx, card);
  });

/** watched: a per-step callback waits on every report, so the host decides each step (one readback per diff). */
async function run(ctx: GpuContext, cache: Record<string, unknown>, watched = false) {
  const p = await pipeline(ctx);
  const request = resolveRequest(p.card, {
    embeddings: { images: 1, negative: false },
    ...runSettings(fixture),
    seed: 0,
    shift: 1,
    eta: 0,
    cache,
  });
  const strategy = createStrategy(ctx, request.cache);
  try {
    const embeddings = Object.fromEntries(
      ["prompt_embeds", "pooled_prompt_embeds"].map((name) => [name, fixture.tensors.get(name)!]),
    );
    const latents = fixtureTensor(fixture, "latents");
    const result = await p.run(request, {
      strategy,
      latents,
      embeddings,
      ...(watched ? { onStep() {} } : {}),
    });
    return { images: toUnitHwc(result.images, result.shape), cache: result.cache };
  } finally {
    strategy.release();
  }
}

/** Our measured diffs per step in cache-dit's layout: DBPrune's judged block diffs in block order. */
function measured(stats: CacheStats): (number | number[] | null)[] {
  if (!stats.blockDiffs) return stats.diffs;
  return stats.blockDiffs.map((row) => {
    const judged = row.filter((d): d is number => d !== null);
    return judged.length > 0 ? judged : null;
  });
}

/** Our diffs against cache-dit's at `steps`; the message names the worst step. */
function assertDiffs(ours: (number | number[] | null)[], theirs: CacheDitResult, steps: number[]): void {
  let worst = { step: -1, error: 0 };
  for (const s of steps) {
    const [a, b] = [[ours[s]].flat(), [theirs.residual_diffs[s]].flat()];
    assert.deepEqual(
      a.map((d) => d === null),
      b.map((d) => d === null),
      `step ${s}: measured where cache-dit did`,
    );
    assert.equal(a.length, b.length, `step ${s}: ${a.length} diffs, cache-dit ${b.length}`);
    a.forEach((d, j) => {
      const error = d === null ? 0 : Math.abs(d - (b[j] as number));
      if (error > worst.error) worst = { step: s, error };
    });
  }
  const s = worst.step;
  assert.ok(
    worst.error <= DIFF_TOL,
    `diff at step ${s} off by ${worst.error.toExponential(3)} (> ${DIFF_TOL}): ours ${ours[s]}, cache-dit ${
      theirs.residual_diffs[s]
    }`,
  );
}

const steps = (n: number) => Array.from({ length: n }, (_, s) => s);
const STEPS = Number(fixture.metadata.num_inference_steps);

gpuTest("FluxPipeline uncached gives the fixture's uncached images", async (ctx) => {
  const plain = await run(ctx, { strategy: "none" });
  assertClose(plain.images, fixtureTensor(fixture, "none.images"), IMAGE_TOL, "uncached images");
});

// The host-decided path on a few settings: a DBCache with B, TaylorSeer on both streams, DBPrune.
const WATCHED = new Set(["F2B2-0.8", "F1B3-0.9-taylorseer", "dbprune-F1B1-0.32"]);

for (const [name, cache] of Object.entries(settings)) {
  for (const watched of WATCHED.has(name) ? [false, true] : [false]) {
    const how = watched ? "decided on the host" : "decided on the GPU";
    gpuTest(
      `FluxPipeline under ${name} (${how}) takes cache-dit's decisions and gives its images`,
      async (ctx) => {
        const theirs = results[name];
        const ours = await run(ctx, cache, watched);
        assert.deepEqual(ours.cache.cachedSteps, theirs.cached_steps, "cached steps");
        if (theirs.pruned_blocks) {
          assert.deepEqual(ours.cache.prunedBlocks, theirs.pruned_blocks, "pruned blocks");
        }
        assertDiffs(measured(ours.cache), theirs, steps(STEPS));
        if (!watched) {
          // Nobody watches the steps: the GPU decided them and the run read its log once, at the end (a static
          // mask decides every step on the host, without reading anything).
          const hostOnly = cache.steps_computation_policy === "static";
          assert.equal(ours.cache.readbacks, hostOnly ? 0 : 1, "readbacks");
        }
        assertClose(ours.images, fixtureTensor(fixture, `${name}.images`), IMAGE_TOL, `${name} images`);
      },
    );
  }
}
