// FLUX over HTTP, on the tiny FluxPipeline directories of tools/flux_fixtures.py: one saved without its
// text components (embeddings only) and one with CLIP, T5 and their tokenizers. Precomputed embeddings in
// `tensors` and prompts give diffusers' images from the same latents (as decoded PNGs), streams carry
// partial images before the result, truncated prompts come back as notes, every input the model cannot take
// is a 400 naming the field before anything is queued, and a request's fault inside the worker is a 400 too.
import assert from "node:assert/strict";
import { decode } from "fast-png";
import type { Float32Tensor } from "../../src/model/safetensors.ts";
import { encodeSafetensors } from "../../src/model/safetensors_writer.ts";
import { resolveRequest } from "../../src/pipeline/request.ts";
import { ApiError } from "../../src/server/api_error.ts";
import { createApp } from "../../src/server/app.ts";
import { DEFAULT_SERVER_OPTIONS } from "../../src/server/options.ts";
import { createServices } from "../../src/server/services.ts";
import { assertClose } from "../support/assert_close.ts";
import { type Fixture, readFixture, runSettings } from "../support/fixtures.ts";
import { copyTree } from "../support/temp.ts";
import { fromBase64, jsonPost, parseSse, serverTest } from "./support/http.ts";

const FIXTURES = "tests/fixtures/flux";
const modelsDir = await Deno.makeTempDir({ prefix: "ditserve-flux-models-" });
await copyTree(`${FIXTURES}/pipeline`, `${modelsDir}/flux`);
await copyTree(`${FIXTURES}/pipeline-text`, `${modelsDir}/flux-text`);

const services = await createServices({ ...DEFAULT_SERVER_OPTIONS, modelsDir, defaultModel: "flux" });
const app = createApp(services.deps);
const generate = (body: unknown, query = "") => app.request(`/v1/generate${query}`, jsonPost(body));

// The fixtures' images in [0, 1] hold to 5e-4 in tests/model/flux_*pipeline_test.ts; a PNG rounds each
// value to the nearest of 256 levels, which adds up to half a level.
const PNG = { atol: 5e-4 + 0.5 / 255, rtol: 0 };

const embeddingsRun = await readFixture(`${FIXTURES}/pipeline-run.safetensors`);
const textRuns = {
  single: await readFixture(`${FIXTURES}/pipeline-text-run-single.safetensors`),
  truncated: await readFixture(`${FIXTURES}/pipeline-text-run-truncated.safetensors`),
  trueCfg: await readFixture(`${FIXTURES}/pipeline-text-run-true-cfg.safetensors`),
};

/** Rows [from, to) of a fixture tensor. */
function rows(fixture: Fixture, name: string, from = 0, to?: number): Float32Tensor {
  const tensor = fixture.tensors.get(name)!;
  const per = tensor.data.length / tensor.shape[0];
  const end = to ?? tensor.shape[0];
  return { shape: [end - from, ...tensor.shape.slice(1)], data: tensor.data.slice(from * per, end * per) };
}

/** A base64 safetensors file of the named tensors (each given, or taken whole from the fixture). */
function tensors(fixture: Fixture, names: string[], given: Record<string, Float32Tensor> = {}): string {
  const all = Object.fromEntries(names.map((name) => [name, given[name] ?? rows(fixture, name)]));
  return encodeSafetensors(all).toBase64();
}

/** A base64 RGB PNG against [H, W, 3] images of the fixture in [0, 1]. */
function assertPng(b64: string, expected: Float32Tensor, what: string): void {
  const png = decode(fromBase64(b64));
  assert.deepEqual([png.height, png.width, png.channels], expected.shape.slice(1), what);
  assertClose(Float32Array.from(png.data, (v) => v / 255), expected.data, PNG, what);
}

const EMBEDDINGS = ["prompt_embeds", "pooled_prompt_embeds"];

serverTest("GET /v1/models: FLUX's inputs, size rule and sequence length", async () => {
  const list = await (await app.request("/v1/models")).json();
  const [flux, text] = ["flux", "flux-text"].map((id) => list.data.find((m: { id: string }) => m.id === id));
  const embeddingInputs = [
    "prompt_embeds",
    "pooled_prompt_embeds",
    "negative_prompt_embeds",
    "negative_pooled_prompt_embeds",
    "latents",
  ];
  assert.deepEqual(flux.inputs, embeddingInputs);
  assert.deepEqual(text.inputs, ["prompt", "negative_prompt", ...embeddingInputs]);
  for (const model of [flux, text]) {
    assert.equal(model.pipeline, "FluxPipeline");
    assert.deepEqual(model.sizes, ["1024x1024"]);
    assert.deepEqual(model.size_rule, { multiple: 16, max_pixels: 4096 * 16 * 16 });
    assert.equal(model.max_sequence_length, 512);
    assert.deepEqual(model.classes, []);
    assert.deepEqual(model.defaults, { steps: 28, guidance: 3.5 });
  }
});

serverTest(
  "embeddings and latents in `tensors` give diffusers' image, streamed with partial images or not",
  async () => {
    const body = {
      ...runSettings(embeddingsRun),
      tensors: tensors(embeddingsRun, [...EMBEDDINGS, "latents"]),
    };
    const res = await generate(body);
    assert.equal(res.status, 200, await res.clone().text());
    const result = await res.json();
    assert.equal(result.model, "flux");
    assert.equal(result.label, null);
    assert.equal(result.prompt, null);
    assert.equal(result.size, "48x32");
    assert.deepEqual(result.notes, []);
    assertPng(result.images[0], rows(embeddingsRun, "images"), "image");

    const streamed = await generate({ ...body, partial_images: 2 }, "?stream=true");
    const events = parseSse(await streamed.text());
    // 4 steps, 2 partial images: after steps 0 and 2 (the image after step 3 is the result).
    assert.deepEqual(events.map((e) => e.event), [
      "step",
      "partial_image",
      "step",
      "step",
      "partial_image",
      "step",
      "result",
    ]);
    const partials = events.filter((e) => e.event === "partial_image").map((e) =>
      e.data as { step: number; partial_image_index: number; images: string[] }
    );
    assert.deepEqual(partials.map((p) => [p.step, p.partial_image_index]), [[0, 0], [2, 1]]);
    for (const p of partials) {
      const png = decode(fromBase64(p.images[0]));
      assert.deepEqual([png.width, png.height], [48, 32]);
    }
    // Decoding the latents mid-run leaves the result as it was.
    assert.deepEqual((events.at(-1)!.data as { images: string[] }).images, result.images);
  },
);

serverTest(
  "a body over 64 KiB is taken when it carries tensors: true CFG from negative embeddings",
  async () => {
    const run = textRuns.trueCfg;
    const names = [...EMBEDDINGS, "negative_prompt_embeds", "negative_pooled_prompt_embeds", "latents"];
    const body = JSON.stringify({
      model: "flux-text",
      ...runSettings(run),
      true_cfg: Number(run.metadata.true_cfg_scale),
      tensors: tensors(run, names),
    });
    assert.ok(body.length > 2 * 64 * 1024, `${body.length} bytes`);
    const res = await generate(body);
    assert.equal(res.status, 200, await res.clone().text());
    assertPng((await res.json()).images[0], rows(run, "images"), "image");
  },
);

serverTest(
  "prompts give diffusers' images from the same latents; true CFG against a negative prompt",
  async () => {
    const single = textRuns.single;
    const [prompt] = JSON.parse(single.metadata.prompts);
    const res = await generate({
      model: "flux-text",
      ...runSettings(single),
      prompt,
      n: 2,
      tensors: tensors(single, ["latents"]),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const result = await res.json();
    assert.equal(result.prompt, prompt);
    result.images.forEach((b64: string, i: number) =>
      assertPng(b64, rows(single, "images", i, i + 1), `image ${i}`)
    );

    const cfg = textRuns.trueCfg;
    const negative = await generate({
      model: "flux-text",
      ...runSettings(cfg),
      prompt: JSON.parse(cfg.metadata.prompts)[0],
      negative_prompt: cfg.metadata.negative_prompt,
      true_cfg: Number(cfg.metadata.true_cfg_scale),
      tensors: tensors(cfg, ["latents"]),
    });
    assert.equal(negative.status, 200, await negative.clone().text());
    assertPng((await negative.json()).images[0], rows(cfg, "images"), "true CFG image");
  },
);

serverTest("a truncated prompt is noted, in the native answer and in OpenAI's shape and stream", async () => {
  const run = textRuns.truncated;
  const prompt = JSON.parse(run.metadata.prompts)[0];
  const [clip, t5] = JSON.parse(run.metadata.untruncated_tokens)[0];
  const notes = [
    `prompt truncated for CLIP: ${clip} tokens, the limit is 77; the rest was dropped`,
    `prompt truncated for T5: ${t5} tokens, the limit is 512; the rest was dropped`,
  ];
  const res = await generate({
    model: "flux-text",
    ...runSettings(run),
    prompt,
    tensors: tensors(run, ["latents"], { latents: rows(run, "latents", 0, 1) }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const result = await res.json();
  assert.deepEqual(result.notes, notes);
  assertPng(result.images[0], rows(run, "images", 0, 1), "image");

  const fields = { model: "flux-text", prompt, size: "48x32", num_inference_steps: 3, guidance_scale: 3.5 };
  const openai = await (await app.request("/v1/images/generations", jsonPost(fields))).json();
  assert.deepEqual(openai.notes, notes);
  assert.equal(openai.size, "48x32");
  // The same request by the native route's names: the same seed's noise, so the same PNG.
  const native =
    await (await generate({ model: "flux-text", prompt, size: "48x32", steps: 3, guidance: 3.5 }))
      .json();
  assert.deepEqual(native.images, openai.data.map((d: { b64_json: string }) => d.b64_json));
  const streamed = await app.request(
    "/v1/images/generations",
    jsonPost({ ...fields, stream: true, partial_images: 3 }),
  );
  const events = parseSse(await streamed.text()) as { event: string; data: Record<string, unknown> }[];
  // 3 steps leave two before the last: the third partial image would be the result itself.
  assert.deepEqual(events.map((e) => e.event), [
    "image_generation.partial_image",
    "image_generation.partial_image",
    "image_generation.completed",
  ]);
  assert.deepEqual(events.map((e) => e.data.partial_image_index), [0, 1, undefined]);
  assert.deepEqual(events[2].data.notes, notes);
  assert.equal(events[2].data.b64_json, openai.data[0].b64_json);
});

const latentsOf48x32 = rows(embeddingsRun, "latents");
const embeddings = Object.fromEntries(EMBEDDINGS.map((name) => [name, rows(embeddingsRun, name)]));
const withTensors = (given: Record<string, Float32Tensor>, fields: Record<string, unknown> = {}) => ({
  size: "48x32",
  steps: 2,
  tensors: encodeSafetensors(given).toBase64(),
  ...fields,
});

const BAD_INPUT: [string, string, unknown, string, RegExp][] = [
  [
    "size not a multiple of 16",
    "/v1/generate",
    withTensors(embeddings, { size: "40x32" }),
    "size",
    /40x32 is not allowed; allowed: "WxH" with width and height positive multiples of 16/,
  ],
  [
    "size over the model's limit",
    "/v1/generate",
    withTensors(embeddings, { size: "2048x1024" }),
    "size",
    /at most 1048576 pixels/,
  ],
  [
    "OpenAI size not a multiple of 16",
    "/v1/images/generations",
    { model: "flux-text", prompt: "a fox", size: "50x50" },
    "size",
    /multiples of 16/,
  ],
  [
    "a prompt to an embeddings-only model",
    "/v1/generate",
    { prompt: "a fox" },
    "prompt",
    /takes precomputed prompt_embeds and pooled_prompt_embeds only: model_index.json saves text_encoder.* as null/,
  ],
  [
    "an OpenAI prompt to an embeddings-only model",
    "/v1/images/generations",
    { prompt: "a fox" },
    "prompt",
    /precomputed prompt_embeds/,
  ],
  [
    "a negative prompt without true CFG",
    "/v1/generate",
    { model: "flux-text", prompt: "a fox", negative_prompt: "blur" },
    "negative_prompt",
    /only with true CFG: set true_cfg .* above 1/,
  ],
  [
    "OpenAI negative prompt without true CFG",
    "/v1/images/generations",
    { model: "flux-text", prompt: "a fox", negative_prompt: "blur" },
    "negative_prompt",
    /true CFG/,
  ],
  [
    "true CFG without a negative prompt",
    "/v1/generate",
    { model: "flux-text", prompt: "a fox", true_cfg: 4 },
    "true_cfg",
    /needs a negative_prompt/,
  ],
  [
    "a negative prompt to an embeddings-only model",
    "/v1/generate",
    withTensors(embeddings, { negative_prompt: "blur", true_cfg: 4 }),
    "negative_prompt",
    /precomputed prompt_embeds/,
  ],
  [
    "negative embeddings without true CFG",
    "/v1/generate",
    withTensors({
      ...embeddings,
      negative_prompt_embeds: embeddings.prompt_embeds,
      negative_pooled_prompt_embeds: embeddings.pooled_prompt_embeds,
    }),
    "negative_prompt_embeds",
    /true_cfg/,
  ],
  [
    "true CFG without negative embeddings",
    "/v1/generate",
    withTensors(embeddings, { true_cfg: 4 }),
    "true_cfg",
    /negative_prompt_embeds/,
  ],
  [
    "pooled embeddings of the wrong width",
    "/v1/generate",
    withTensors({ ...embeddings, pooled_prompt_embeds: { shape: [1, 11], data: new Float32Array(11) } }),
    "pooled_prompt_embeds",
    /shape \[1, 11\] does not fit \[1 or 1, 12\]/,
  ],
  [
    "prompt embeddings of the wrong width",
    "/v1/generate",
    withTensors({ ...embeddings, prompt_embeds: { shape: [1, 5, 23], data: new Float32Array(115) } }),
    "prompt_embeds",
    /shape \[1, 5, 23\] does not fit \[1 or 1, 5, 24\]/,
  ],
  [
    "embeddings for 2 images, n 3",
    "/v1/generate",
    withTensors({
      prompt_embeds: { shape: [2, 5, 24], data: new Float32Array(240) },
      pooled_prompt_embeds: { shape: [2, 12], data: new Float32Array(24) },
    }, { n: 3 }),
    "n",
    /prompt_embeds hold 2 prompts, one image each; n must be 1 or 2/,
  ],
  [
    "pooled embeddings without prompt embeddings",
    "/v1/generate",
    withTensors({ pooled_prompt_embeds: embeddings.pooled_prompt_embeds }),
    "prompt_embeds",
    /give \[1 or 1, tokens, 24\]/,
  ],
  [
    "latents that do not match the size",
    "/v1/generate",
    withTensors({ ...embeddings, latents: latentsOf48x32 }, { size: "48x48" }),
    "latents",
    /latents: shape \[1, 6, 16\] does not fit \[1, 9, 16\] \(1 image\(s\) at 48x48\)/,
  ],
  [
    "a tensor the API does not take",
    "/v1/generate",
    withTensors({ ...embeddings, images: latentsOf48x32 }),
    "tensors",
    /"images" is not a tensor this API takes; allowed: prompt_embeds, .*latents/,
  ],
  [
    "a prompt and prompt embeddings",
    "/v1/generate",
    withTensors(embeddings, { model: "flux-text", prompt: "a fox" }),
    "prompt",
    /either prompts or prompt_embeds, not both/,
  ],
  [
    "an empty prompt",
    "/v1/generate",
    { model: "flux-text", prompt: " " },
    "prompt",
    /prompt: is empty/,
  ],
  [
    "an empty OpenAI prompt",
    "/v1/images/generations",
    { model: "flux-text", prompt: "" },
    "prompt",
    /prompt: is empty/,
  ],
  [
    "OpenAI true CFG without a negative prompt",
    "/v1/images/generations",
    { model: "flux-text", prompt: "a fox", true_cfg_scale: 4 },
    "true_cfg_scale",
    /^true_cfg_scale: true CFG above 1 needs a negative_prompt/,
  ],
  [
    "partial images not an integer",
    "/v1/images/generations",
    { model: "flux-text", prompt: "a fox", stream: true, partial_images: 1.5 },
    "partial_images",
    /partial_images must be an integer in 0\.\.3/,
  ],
  [
    "partial images over 3",
    "/v1/images/generations",
    { model: "flux-text", prompt: "a fox", stream: true, partial_images: 4 },
    "partial_images",
    /partial_images must be an integer in 0\.\.3/,
  ],
  [
    "a class to a text model",
    "/v1/generate",
    { model: "flux-text", label: 3 },
    "label",
    /takes a text prompt, not a class/,
  ],
  [
    "neither prompt nor embeddings",
    "/v1/generate",
    { model: "flux-text" },
    "prompt",
    /either prompts or prompt_embeds/,
  ],
  [
    "a body over 32 MiB",
    "/v1/generate",
    { tensors: "A".repeat(33 * 1024 * 1024) },
    "body",
    /over 33554432 bytes \(32 MiB\)/,
  ],
];

/** Jobs the worker has ended, however they ended. */
async function jobsEnded(): Promise<number> {
  const text = await (await app.request("/metrics")).text();
  return [...text.matchAll(/^ditserve_jobs_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

serverTest("bad FLUX input is a 400 naming the field, before anything is queued", async () => {
  const before = await jobsEnded();
  for (const [what, route, body, field, message] of BAD_INPUT) {
    const res = await app.request(route, jsonPost(body));
    const error = await res.json();
    assert.equal(res.status, field === "body" ? 413 : 400, `${what}: ${JSON.stringify(error)}`);
    assert.equal(error.field, field, `${what}: ${JSON.stringify(error)}`);
    assert.match(error.error, message, what);
  }
  assert.equal(await jobsEnded(), before, "a refused request reached the worker");
});

serverTest(
  "a request's fault found by the worker is a 400 naming the field; the server keeps serving",
  async () => {
    const model = await services.deps.catalog.get("flux");
    const request = resolveRequest(model.card, {
      embeddings: { images: 1, negative: false },
      size: "48x32",
      steps: 1,
      seed: 0,
      shift: 1,
      eta: 0,
      cache: "none",
    });
    // Past the HTTP thread's checks, as a bug there would let it through.
    const unchecked = { ...embeddings, pooled_prompt_embeds: { shape: [1, 11], data: new Float32Array(11) } };
    await assert.rejects(
      services.deps.generator.submit(
        { model, request, layout: "each", previews: [], embeddings: unchecked },
        { signal: new AbortController().signal },
      ),
      (e) => e instanceof ApiError && e.status === 400 && e.field === "pooled_prompt_embeds",
    );
    const next = await generate(withTensors(embeddings, { steps: 1 }));
    assert.equal(next.status, 200, await next.clone().text());
  },
);

serverTest("closing the services", async () => {
  services.close();
  await Deno.remove(modelsDir, { recursive: true });
});
