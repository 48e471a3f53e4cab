// The HTTP API through app.request() against one real GPU worker: generation (PNG, JSON, SSE, OpenAI shape)
// read back by the digit classifier, the bad-input table, API key, limits, timeout, metrics, OpenAPI.
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { createApp } from "../../src/server/app.ts";
import { GenerationService } from "../../src/server/generation_service.ts";
import { JobQueue } from "../../src/server/job_queue.ts";
import { DEFAULT_SERVER_OPTIONS } from "../../src/server/options.ts";
import { createServices } from "../../src/server/services.ts";
import { fromBase64, jsonPost, parseSse, readDigits, serverTest } from "./support/http.ts";

// The class-label model's API; the default (mnist-flux, text) has tests/server/mnist_flux_default_test.ts.
const services = await createServices({ ...DEFAULT_SERVER_OPTIONS, defaultModel: "mnist-dit" });
const { deps } = services;
const app = createApp(deps);
const generate = (body: unknown, headers: Record<string, string> = {}) =>
  app.request("/v1/generate", jsonPost(body, headers));

serverTest("health, readiness (adapter named) and the model list", async () => {
  assert.deepEqual(await (await app.request("/health")).json(), { status: "ok" });
  await services.worker.ready();
  const ready = await app.request("/ready");
  assert.equal(ready.status, 200);
  const body = await ready.json();
  assert.equal(body.model, "mnist-dit");
  assert.ok(body.adapter.length > 0);
  const list = await (await app.request("/v1/models")).json();
  assert.equal(list.object, "list");
  const models = list.data;
  assert.deepEqual(models.map((m: { id: string }) => m.id), ["mnist-dit", "mnist-flux"]);
  assert.equal(models[0].object, "model");
  assert.equal(models[0].owned_by, "ditserve");
  assert.ok(Number.isInteger(models[0].created) && models[0].created > 0);
  assert.deepEqual(models[0].sizes, ["28x28"]);
  assert.equal(models[0].size_rule, null);
  assert.equal(models[0].max_sequence_length, null);
  assert.deepEqual(models[0].inputs, ["class_labels", "latents"]);
  assert.equal(models[0].id, "mnist-dit");
  assert.deepEqual(models[0].classes, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
  assert.equal(models[0].class_words[7], "seven");
  assert.equal(models[0].blocks, 12);
  assert.deepEqual(models[0].strategies, [
    "none",
    "fbcache",
    "dbcache",
    "dbprune",
    "magcache",
    "teacache",
    "easycache",
  ]);
  assert.deepEqual(models[0].limits.n, { min: 1, max: 8 });
  assert.deepEqual(models[0].limits.steps, { min: 1, max: 1000 });
  assert.deepEqual(models[0].limits.partial_images, { min: 0, max: 3 });
});

serverTest("Accept: image/png returns the digits side by side, read by the classifier as asked", async () => {
  const res = await generate({ label: "7", n: 2, steps: 8, guidance: 3, seed: 1 }, { accept: "image/png" });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "image/png");
  assert.ok(Number(res.headers.get("x-seconds")) > 0);
  assert.equal(res.headers.get("x-cached-steps"), "0");
  assert.deepEqual(await readDigits(new Uint8Array(await res.arrayBuffer()), 2), [7, 7]);
});

serverTest("JSON: one base64 PNG per image, cache stats, timings and adapter", async () => {
  const res = await generate({ label: "three", n: 2, steps: 8, guidance: 3, seed: 2, cache: "fbcache" });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.model, "mnist-dit");
  assert.equal(body.label, "3");
  assert.equal(body.n, 2);
  assert.equal(body.seed, 2);
  assert.equal(body.steps, 8);
  assert.equal(body.images.length, 2);
  for (const b64 of body.images) assert.deepEqual(await readDigits(fromBase64(b64)), [3]);
  assert.match(body.cache.strategy, /^fbcache/);
  assert.equal(body.cache.cachedSteps.length + body.cache.computedSteps.length, 8);
  for (const key of ["queue_seconds", "generate_seconds", "total_seconds"]) {
    assert.ok(body.timings[key] >= 0, key);
  }
  assert.ok(body.timings.total_seconds >= body.timings.generate_seconds);
  assert.equal(typeof body.adapter, "string");
});

serverTest("?stream=true sends one step event per step, in order, then the result", async () => {
  const res = await generate({ label: 5, steps: 5, guidance: 3, cache: { strategy: "dbcache", Fn: 1 } }, {});
  assert.equal(res.status, 200);
  const streamed = await app.request(
    "/v1/generate?stream=true",
    jsonPost({ label: 5, steps: 5, guidance: 3, cache: { strategy: "dbcache", Fn: 1 } }),
  );
  assert.match(streamed.headers.get("content-type") ?? "", /^text\/event-stream/);
  const events = parseSse(await streamed.text());
  assert.deepEqual(events.map((e) => e.event), ["step", "step", "step", "step", "step", "result"]);
  events.slice(0, 5).forEach((e, i) => {
    const step = e.data as Record<string, unknown>;
    assert.equal(step.step, i);
    assert.equal(step.steps, 5);
    assert.equal(typeof step.cached, "boolean");
    assert.equal(typeof step.blocks_run, "number");
  });
  const result = events[5].data as { images: string[]; cache: { strategy: string } };
  assert.equal(decode(fromBase64(result.images[0])).width, 28);
  assert.match(result.cache.strategy, /^dbcache/);
  // The same request without streaming draws the same image: progress reporting changes nothing.
  assert.deepEqual((await res.json()).images, result.images);
});

serverTest(
  "OpenAI images shape: the prompt names a class; anything else lists the valid classes",
  async () => {
    const res = await app.request("/v1/images/generations", jsonPost({ prompt: "seven", n: 1 }));
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.ok(Math.abs(body.created - Date.now() / 1000) < 600);
    assert.equal(body.data.length, 1);
    assert.deepEqual(await readDigits(fromBase64(body.data[0].b64_json)), [7]);
    const bad = await app.request("/v1/images/generations", jsonPost({ prompt: "a cat on a mat" }));
    assert.equal(bad.status, 400);
    const error = await bad.json();
    assert.equal(error.field, "prompt");
    assert.match(error.error, /valid: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 \(or zero, one/);
  },
);

serverTest(
  "OpenAI image stream: partial images spread over the steps, then one completed event per image",
  async () => {
    const fields = { prompt: "seven", n: 2, num_inference_steps: 6, guidance_scale: 3, seed: 4 };
    const res = await app.request(
      "/v1/images/generations",
      jsonPost({ ...fields, stream: true, partial_images: 2 }),
    );
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const events = parseSse(await res.text()) as { event: string; data: Record<string, unknown> }[];
    const partial = "image_generation.partial_image";
    const completed = "image_generation.completed";
    assert.deepEqual(events.map((e) => e.event), [partial, partial, partial, partial, completed, completed]);
    for (const { event, data } of events) {
      assert.equal(data.type, event);
      assert.equal(data.size, "28x28");
      assert.equal(data.output_format, "png");
      assert.ok(Math.abs((data.created_at as number) - Date.now() / 1000) < 600);
      assert.equal(decode(fromBase64(data.b64_json as string)).width, 28);
    }
    assert.deepEqual(events.slice(0, 4).map((e) => e.data.partial_image_index), [0, 0, 1, 1]);
    assert.deepEqual(events.map((e) => e.data.image_index), [0, 1, 0, 1, 0, 1]);
    // Partial images decode the latents mid-run without changing the result.
    const plain = await (await app.request("/v1/images/generations", jsonPost(fields))).json();
    assert.deepEqual(plain.data.map((d: { b64_json: string }) => d.b64_json), [
      events[4].data.b64_json,
      events[5].data.b64_json,
    ]);
  },
);

const IMAGES_BAD_INPUT: [string, unknown, number, string, RegExp][] = [
  ["prompt over 64 KiB", { prompt: "x".repeat(70 * 1024) }, 413, "body", /64 KiB/],
  ["size of another model", { prompt: "7", size: "1024x1024" }, 400, "size", /28x28 images only/],
  ["negative prompt to a class model", { prompt: "7", negative_prompt: "3" }, 400, "negative_prompt", /no/],
  ["true CFG to a class model", { prompt: "7", true_cfg_scale: 4 }, 400, "true_cfg_scale", /no true CFG/],
  ["steps 0", { prompt: "7", num_inference_steps: 0 }, 400, "num_inference_steps", /1\.\.1000/],
  ["partial images without a stream", { prompt: "7", partial_images: 1 }, 400, "partial_images", /stream/],
  ["stream not a boolean", { prompt: "7", stream: "yes" }, 400, "stream", /boolean/],
  ["url response format", { prompt: "7", response_format: "url" }, 400, "response_format", /b64_json/],
];

serverTest("OpenAI images shape: bad input is a 4xx naming the field", async () => {
  for (const [what, body, status, field, message] of IMAGES_BAD_INPUT) {
    const res = await app.request("/v1/images/generations", jsonPost(body));
    const error = await res.json();
    assert.equal(res.status, status, `${what}: ${JSON.stringify(error)}`);
    assert.equal(error.field, field, `${what}: ${JSON.stringify(error)}`);
    assert.match(error.error, message, what);
  }
});

const BAD_INPUT: [string, string | unknown, number, string, RegExp][] = [
  ["malformed JSON", '{"label": 7,', 400, "body", /JSON/],
  ["body not an object", "[1, 2]", 400, "body", /object/i],
  ["missing label", {}, 400, "label", /label/],
  ["label of the wrong type", { label: true }, 400, "label", /label must be a class name/],
  ["steps as a string", { label: 7, steps: "8" }, 400, "steps", /steps must be an integer in 1\.\.1000/],
  ["steps 0", { label: 7, steps: 0 }, 400, "steps", /steps must be in 1\.\.1000/],
  ["steps 1001", { label: 7, steps: 1001 }, 400, "steps", /1\.\.1000/],
  ["fractional steps", { label: 7, steps: 2.5 }, 400, "steps", /integer/],
  ["negative seed", { label: 7, seed: -1 }, 400, "seed", /seed must be in 0\.\.4294967295/],
  ["seed over 2^32-1", { label: 7, seed: 2 ** 32 }, 400, "seed", /0\.\.4294967295/],
  ["guidance 31", { label: 7, guidance: 31 }, 400, "guidance", /guidance must be in 0\.\.30/],
  ["guidance as a string", { label: 7, guidance: "high" }, 400, "guidance", /guidance must be a number/],
  ["n 0", { label: 7, n: 0 }, 400, "n", /n must be an integer in 1\.\.8/],
  ["n 9", { label: 7, n: 9 }, 400, "n", /1\.\.8/],
  ["unknown sampler", { label: 7, sampler: "heun" }, 400, "sampler", /"heun" is not one of euler, ddim/],
  ["unknown field", { label: 7, colour: "red" }, 400, "colour", /colour/],
  [
    "unknown model",
    { label: 7, model: "sd3" },
    404,
    "model",
    /model "sd3" not found; available: mnist-dit, mnist-flux/,
  ],
  ["model path outside MODELS_DIR", { label: 7, model: "../weights" }, 400, "model", /plain name/],
  ["model parent directory", { label: 7, model: ".." }, 404, "model", /not found/],
  ["unknown label", { label: "eleven" }, 400, "label", /unknown class "eleven".*valid: 0, 1/],
  ["label index out of range", { label: 10 }, 400, "label", /unknown class 10/],
  ["unknown strategy", { label: 7, cache: "turbo" }, 400, "cache", /none, fbcache, dbcache, dbprune/],
  ["unknown strategy object", { label: 7, cache: { strategy: "turbo" } }, 400, "cache", /dbprune/],
  ["cache of the wrong type", { label: 7, cache: 3 }, 400, "cache", /cache must be one of/],
  ["unknown cache option", { label: 7, cache: { strategy: "dbcache", bogus: 1 } }, 400, "cache", /"bogus"/],
  [
    "cache option out of range",
    { label: 7, cache: { strategy: "fbcache", residual_diff_threshold: -1 } },
    400,
    "cache",
    /residual_diff_threshold must be a number >= 0/,
  ],
  [
    "Fn + Bn over the blocks",
    { label: 7, cache: { strategy: "dbcache", Fn: 8, Bn: 8 } },
    400,
    "cache",
    /12 blocks/,
  ],
  ["body over 64 KiB without tensors", { label: 7, prompt: "x".repeat(70 * 1024) }, 413, "body", /64 KiB/],
  ["prompt to a class model", { prompt: "a seven" }, 400, "prompt", /class-conditional: it takes a class/],
  [
    "negative prompt to a class model",
    { label: 7, negative_prompt: "blur" },
    400,
    "negative_prompt",
    /no negative/,
  ],
  ["size a class model does not draw", { label: 7, size: "32x32" }, 400, "size", /draws 28x28 images only/],
  ["tensors not base64", { label: 7, tensors: "not base64!" }, 400, "tensors", /not base64/],
  ["tensors not safetensors", { label: 7, tensors: "AAAA" }, 400, "tensors", /too short to be safetensors/],
  ["partial images without a stream", { label: 7, partial_images: 2 }, 400, "partial_images", /stream/],
  ["partial images 4", { label: 7, partial_images: 4 }, 400, "partial_images", /0\.\.3/],
];

serverTest(
  "bad input: the right 4xx with a JSON error naming the field; the server keeps serving",
  async () => {
    for (const [what, body, status, field, message] of BAD_INPUT) {
      const res = await generate(body);
      const error = await res.json();
      assert.equal(res.status, status, `${what}: ${JSON.stringify(error)}`);
      assert.equal(error.field, field, `${what}: ${JSON.stringify(error)}`);
      assert.match(error.error, message, what);
    }
    const noType = await app.request("/v1/generate", { method: "POST", body: '{"label": 7}' });
    assert.equal(noType.status, 415);
    assert.match((await noType.json()).error, /application\/json/);
    const after = await generate({ label: 1, steps: 2 });
    assert.equal(after.status, 200);
    assert.equal((await after.json()).images.length, 1);
  },
);

serverTest("API_KEY: /v1/* needs the bearer key (401 JSON otherwise); /health does not", async () => {
  const locked = createApp({ ...deps, settings: { ...deps.settings, apiKey: "s3cret-key" } });
  const cases: [Record<string, string>, number][] = [
    [{}, 401],
    [{ authorization: "Bearer wrong" }, 401],
    [{ authorization: "Bearer s3cret-key-and-more" }, 401],
    [{ authorization: "Basic czNjcmV0LWtleQ==" }, 401],
    [{ authorization: "Bearer s3cret-key" }, 200],
  ];
  for (const [headers, status] of cases) {
    const res = await locked.request("/v1/models", { headers });
    assert.equal(res.status, status, JSON.stringify(headers));
    if (status === 401) assert.equal((await res.json()).field, "authorization");
  }
  const generation = await locked.request("/v1/generate", jsonPost({ label: 2, steps: 1 }));
  assert.equal(generation.status, 401);
  assert.equal((await locked.request("/health")).status, 200);
});

serverTest(
  "a request over REQUEST_TIMEOUT_S gets 504 and its job stops; the next one is served",
  async () => {
    const queue = new JobQueue(4);
    const hurried = createApp({
      ...deps,
      generator: new GenerationService(services.worker, queue, deps.metrics, 1),
    });
    const res = await hurried.request("/v1/generate", jsonPost({ label: 4, steps: 1000 }));
    assert.equal(res.status, 504);
    assert.match((await res.json()).error, /timed out after 1 s/);
    // The next job waits on the same queue behind the stopped one, with time to spare on a loaded machine.
    const patient = createApp({
      ...deps,
      generator: new GenerationService(services.worker, queue, deps.metrics, 120),
    });
    const next = await patient.request("/v1/generate", jsonPost({ label: 4, steps: 2 }));
    assert.equal(next.status, 200);
    const metrics = await (await app.request("/metrics")).text();
    assert.match(
      metrics,
      /^ditserve_jobs_total\{outcome="aborted"\} 1$/m,
      "the worker stopped the 1000 steps",
    );
    // In OpenAI's image stream the timeout is an error event, in the shape OpenAI's clients raise.
    const streamed = await hurried.request(
      "/v1/images/generations",
      jsonPost({ prompt: "4", num_inference_steps: 1000, stream: true }),
    );
    const events = parseSse(await streamed.text());
    assert.deepEqual(events.map((e) => e.event), ["error"]);
    assert.deepEqual(events[0].data, {
      type: "error",
      error: { message: "request timed out after 1 s (REQUEST_TIMEOUT_S)", param: null },
    });
    // Queued behind the stopped job, as above, so that no later test finds the worker busy.
    assert.equal((await patient.request("/v1/generate", jsonPost({ label: 4, steps: 1 }))).status, 200);
  },
);

serverTest("secure headers always; CORS only when an origin is configured", async () => {
  const plain = await app.request("/v1/models", { headers: { origin: "https://elsewhere.example" } });
  assert.equal(plain.headers.get("x-content-type-options"), "nosniff");
  assert.equal(plain.headers.get("access-control-allow-origin"), null);
  const open = createApp({ ...deps, settings: { ...deps.settings, corsOrigin: "https://ui.example" } });
  const preflight = await open.request("/v1/generate", {
    method: "OPTIONS",
    headers: { origin: "https://ui.example", "access-control-request-method": "POST" },
  });
  assert.equal(preflight.headers.get("access-control-allow-origin"), "https://ui.example");
});

serverTest("the playground page is served as HTML; without it the app still works", async () => {
  const page = await app.request("/");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  const bare = createApp({ ...deps, playground: null });
  assert.equal((await bare.request("/")).status, 404);
  assert.equal((await bare.request("/health")).status, 200);
});

serverTest("OpenAPI document is generated from the request schemas", async () => {
  const doc = await (await app.request("/openapi.json")).json();
  assert.match(doc.openapi, /^3\./);
  for (
    const path of ["/v1/generate", "/v1/images/generations", "/v1/models", "/health", "/ready", "/metrics"]
  ) {
    assert.ok(doc.paths[path], path);
  }
  const body = doc.paths["/v1/generate"].post.requestBody.content["application/json"].schema;
  assert.equal(body.required, undefined, "label, prompt and tensors are each optional");
  assert.match(body.properties.tensors.description, /base64 safetensors .*32 MiB/);
  assert.equal(body.properties.steps.maximum, 1000);
  assert.equal(body.properties.n.maximum, 8);
  assert.match(body.properties.cache.description, /dbprune: .*non_prune_blocks_ids/);
  assert.ok(doc.paths["/v1/generate"].post.responses["429"]);
});

serverTest(
  "metrics: requests by route and status, queue depth, generation seconds, steps, GPU memory",
  async () => {
    const text = await (await app.request("/metrics")).text();
    const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
    assert.ok(
      value(/ditserve_http_requests_total\{method="POST",route="\/v1\/generate",status="200"\} (\d+)/) >= 4,
    );
    assert.ok(
      value(/ditserve_http_requests_total\{method="POST",route="\/v1\/generate",status="400"\} (\d+)/) >= 20,
    );
    assert.equal(value(/ditserve_queue_depth (\d+)/), 0);
    assert.ok(value(/ditserve_generation_seconds_count (\d+)/) >= 4);
    assert.ok(value(/ditserve_steps_total\{outcome="computed"\} (\d+)/) > 0);
    assert.ok(value(/ditserve_gpu_pool_bytes (\d+)/) > 0);
  },
);

serverTest("closing the services stops the worker; /ready then answers 503", async () => {
  services.close();
  const res = await app.request("/ready");
  assert.equal(res.status, 503);
  assert.equal((await generate({ label: 1, steps: 1 })).status, 503);
});
