// The cache decision path through the HTTP API (one real GPU worker, mnist-dit): /v1/models gives the costs
// the worker measured at start-up, and a streamed request takes the same decisions, on the same path, as
// the same request answered as plain JSON: the transport never chooses the algorithm.
import assert from "node:assert/strict";
import { createApp } from "../../src/server/app.ts";
import { DEFAULT_SERVER_OPTIONS } from "../../src/server/options.ts";
import { createServices } from "../../src/server/services.ts";
import { jsonPost, parseSse, serverTest } from "./support/http.ts";

const services = await createServices({ ...DEFAULT_SERVER_OPTIONS, defaultModel: "mnist-dit" });
const app = createApp(services.deps);

serverTest("/v1/models: the decision paths' costs on this adapter, measured at start-up", async () => {
  await services.worker.ready();
  const { data } = await (await app.request("/v1/models")).json();
  for (const model of data) {
    const d = model.cache_decisions;
    assert.ok(d.empty_dispatch_ms > 0 && d.indirect_extra_ms > 0 && d.readback_ms > 0, JSON.stringify(d));
    const perDispatch = Math.max(d.empty_dispatch_ms, d.indirect_extra_ms);
    assert.equal(d.gpu_up_to_dispatches, Math.floor(d.readback_ms / perDispatch));
  }
});

serverTest("a streamed request decides as the plain one: same path, steps, reports and image", async () => {
  const body = {
    label: 4,
    steps: 10,
    guidance: 3,
    seed: 5,
    cache: { strategy: "dbcache", Fn: 1, Bn: 0, residual_diff_threshold: 0.3, max_warmup_steps: 2 },
  };
  const plain = await (await app.request("/v1/generate", jsonPost(body))).json();
  const events = parseSse(await (await app.request("/v1/generate?stream=true", jsonPost(body))).text());
  const steps = events.filter((e) => e.event === "step").map((e) => e.data as Record<string, unknown>);
  const streamed = events.at(-1)!.data as typeof plain;
  assert.deepEqual(steps.map((s) => s.step), [...Array(10).keys()]);
  assert.deepEqual(steps.flatMap((s, i) => (s.cached ? [i] : [])), streamed.cache.cachedSteps);
  assert.ok(plain.cache.cachedSteps.length > 0, `caches: ${plain.cache.cachedSteps}`);
  assert.ok(["gpu", "readback"].includes(plain.cache.decisions), plain.cache.decisions);
  const { readbacks: _s, ...streamedCache } = streamed.cache;
  const { readbacks: _p, ...plainCache } = plain.cache;
  assert.deepEqual(streamedCache, plainCache);
  assert.deepEqual(streamed.images, plain.images);
});

serverTest("closing the services stops the worker", () => {
  services.close();
  return Promise.resolve();
});
