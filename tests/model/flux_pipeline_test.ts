// A FluxPipeline directory written by diffusers' save_pretrained without its text components
// (tools/flux_fixtures.py): from the same packed latents and prompt embeddings, the same steps and guidance
// give the same images as diffusers' pipeline(output_type="np"): the mu-shifted sigmas, timesteps / 1000,
// the guidance embedding, the 2x2 unpacking and latents / scaling_factor + shift_factor all in between.
import assert from "node:assert/strict";
import { toUnitHwc } from "../../src/pipeline/image.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { calculateShift } from "../../src/pipeline/pipelines/flux.ts";
import { loadPipeline } from "../../src/pipeline/pipelines/load.ts";
import { RequestError, resolveRequest } from "../../src/pipeline/request.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture, runSettings } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "tests/fixtures/flux/pipeline";
// Images in [0, 1] after a 5-block BF16-stored transformer (f32 compute on both sides), 4 steps and the
// VAE: the per-stage ~1e-5 differences pass through the steps and the decoder. A wrong sigma shift, unpack
// order or shift_factor moves pixels by >= 1e-2.
const TOL = { atol: 5e-4, rtol: 0 };

const request = async (fields: Record<string, unknown> = {}) => {
  const fixture = await readFixture(`${DIR}-run.safetensors`);
  const card = await readModelCard(DIR);
  return {
    fixture,
    card,
    request: resolveRequest(card, {
      embeddings: { images: 1, negative: false },
      ...runSettings(fixture),
      seed: 0,
      shift: 1,
      eta: 0,
      cache: "none",
      ...fields,
    }),
  };
};

const embeddingsOf = (fixture: Awaited<ReturnType<typeof readFixture>>) =>
  Object.fromEntries(
    ["prompt_embeds", "pooled_prompt_embeds"].map((name) => [name, {
      shape: fixture.tensors.get(name)!.shape,
      data: fixtureTensor(fixture, name),
    }]),
  );

gpuTest("FluxPipeline from fixed latents and prompt embeddings gives diffusers' images", async (ctx) => {
  const { fixture, card, request: r } = await request();
  assert.equal(card.pipeline, "FluxPipeline");
  const pipeline = await loadPipeline(ctx, card);
  try {
    const previews: number[] = [];
    const result = await pipeline.run(r, {
      latents: fixtureTensor(fixture, "latents"),
      embeddings: embeddingsOf(fixture),
      // Partial images decode the latents mid-run; the run's own images must not change.
      previews: {
        after: [1, 3],
        onPreview: (step, decoded) => {
          assert.deepEqual(decoded.shape, [1, 3, 32, 48]);
          assert.ok(decoded.images.every(Number.isFinite));
          previews.push(step);
        },
      },
    });
    assert.deepEqual(previews, [1], "the last step is the final image, not a preview");
    assert.deepEqual(result.shape, [1, 3, 32, 48]);
    assertClose(toUnitHwc(result.images, result.shape), fixtureTensor(fixture, "images"), TOL, "images");
  } finally {
    pipeline.release();
  }
});

gpuTest("FluxPipeline: embeddings and latents that do not fit name both shapes", async (ctx) => {
  const { fixture, card, request: r } = await request();
  const pipeline = await loadPipeline(ctx, card);
  const embeddings = embeddingsOf(fixture);
  const latents = fixtureTensor(fixture, "latents");
  try {
    await assert.rejects(
      pipeline.run(r, {
        latents,
        embeddings: { ...embeddings, pooled_prompt_embeds: { shape: [1, 11], data: new Float32Array(11) } },
      }),
      (e) =>
        e instanceof RequestError && e.field === "pooled_prompt_embeds" &&
        /\[1, 11\].*\[1 or 1, 12\]/.test(e.message),
    );
    await assert.rejects(
      pipeline.run(r, { latents, embeddings: { pooled_prompt_embeds: embeddings.pooled_prompt_embeds } }),
      (e) => e instanceof RequestError && e.field === "prompt_embeds",
    );
    await assert.rejects(
      pipeline.run(r, { latents: latents.subarray(1), embeddings }),
      /latents hold 95 values; the model takes \[1, 6, 16\] \(96 values\)/,
    );
  } finally {
    pipeline.release();
  }
});

Deno.test("FluxPipeline's mu is linear in the image tokens between the scheduler's anchors", () => {
  const config = { base_image_seq_len: 256, max_image_seq_len: 4096, base_shift: 0.5, max_shift: 1.15 };
  assert.equal(calculateShift(256, config), 0.5);
  assert.ok(Math.abs(calculateShift(4096, config) - 1.15) < 1e-12);
  assert.ok(Math.abs(calculateShift(1024, config) - (0.5 + 0.65 * 768 / 3840)) < 1e-12);
});

Deno.test("FluxPipeline requests: sizes, prompts to a model without encoders, negative prompts", async () => {
  const card = await readModelCard(DIR);
  const base = { embeddings: { images: 1, negative: false }, seed: 0, shift: 1, eta: 0, cache: "none" };
  assert.deepEqual(resolveRequest(card, { ...base, size: "48x32" }).size, { width: 48, height: 32 });
  assert.deepEqual(resolveRequest(card, base).size, { width: 1024, height: 1024 });
  const refused = (fields: Record<string, unknown>, field: string, pattern: RegExp) =>
    assert.throws(
      () => resolveRequest(card, { ...base, ...fields }),
      (e) => e instanceof RequestError && e.field === field && pattern.test(e.message),
    );
  refused(
    { size: "40x32" },
    "size",
    /40x32 is not allowed; allowed: "WxH" with width and height positive multiples of 16/,
  );
  refused({ size: "2048x2048" }, "size", /at most 1048576 pixels/);
  refused({ size: "big" }, "size", /"big" is not a size/);
  refused(
    { embeddings: undefined, prompts: ["a cat"] },
    "prompt",
    /prompt_embeds and pooled_prompt_embeds only: .*text_encoder.* as null/,
  );
  refused({ negativePrompt: "blurry" }, "negative_prompt", /takes precomputed prompt_embeds/);
  refused({ embeddings: { images: 1, negative: true } }, "negative_prompt_embeds", /true_cfg/);
  refused({ true_cfg: 4 }, "true_cfg", /needs a negative_prompt/);
  refused({ embeddings: undefined, labels: [3] }, "prompt", /takes a text prompt, not a class/);
  assert.equal(
    resolveRequest(card, { ...base, embeddings: { images: 1, negative: true }, true_cfg: 4 }).trueCfg,
    true,
  );
});
