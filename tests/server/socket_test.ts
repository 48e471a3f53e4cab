// The server on a real socket (127.0.0.1, port 0) with MAX_QUEUE 1: a PNG read as the asked digit, SSE over
// the wire, 429 when full, client disconnects freeing their slots (queued and running), a worker crash
// or a lost device answered with 503 and followed by recovery, and shutdown.
import assert from "node:assert/strict";
import { type RunningServer, startServer } from "../../src/server/start.ts";
import { CRASH_SEED, LOST_SEED, spawnCrashingWorker } from "./support/crash.ts";
import { jsonPost, parseSse, readDigits, serverTest } from "./support/http.ts";

const server: RunningServer = await startServer({
  port: 0,
  maxQueue: 1,
  defaultModel: "mnist-dit",
  spawnWorker: spawnCrashingWorker,
});
const post = (body: unknown, init: RequestInit = {}, query = "") =>
  fetch(`${server.url}/v1/generate${query}`, { ...jsonPost(body), ...init });

/** A metric's value, e.g. metric('ditserve_jobs_total{outcome="aborted"}'); 0 when not reported yet. */
async function metric(series: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
const queueDepth = () => metric("ditserve_queue_depth");
const abortedJobs = () => metric('ditserve_jobs_total{outcome="aborted"}');

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`gave up waiting until ${what}`);
}

/** Starts a long streamed job and resolves once its first step arrived (so it is running, not queued). */
async function startLongJob(controller: AbortController): Promise<void> {
  const res = await post({ label: 0, steps: 1000 }, { signal: controller.signal }, "?stream=true");
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.match(new TextDecoder().decode(first.value), /event: step/);
  reader.read().catch(() => {}); // keep the stream open until the client aborts
}

serverTest("over the socket: a PNG read as the asked digit, and SSE steps then the result", async () => {
  const png = await post({ label: "eight", steps: 8, guidance: 3, seed: 3 }, {
    headers: { accept: "image/png", "content-type": "application/json" },
  });
  assert.equal(png.status, 200);
  assert.deepEqual(await readDigits(new Uint8Array(await png.arrayBuffer())), [8]);
  const sse = await post({ label: 2, steps: 3 }, {}, "?stream=true");
  const events = parseSse(await sse.text());
  assert.deepEqual(events.map((e) => e.event), ["step", "step", "step", "result"]);
});

serverTest("full queue gets 429 with Retry-After; disconnecting clients free their slots", async () => {
  const running = new AbortController();
  const first = post({ label: 0, steps: 1000 }, { signal: running.signal }).catch((e) => e);
  await until("the first job runs", async () => (await metric("ditserve_jobs_running")) === 1);
  const queued = new AbortController();
  const waiting = post({ label: 1, steps: 1000 }, { signal: queued.signal }).catch((e) => e);
  await until("the second job waits", async () => (await queueDepth()) === 1);

  const refused = await post({ label: 1, steps: 1 });
  assert.equal(refused.status, 429);
  assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  assert.match((await refused.json()).error, /queue is full/);

  queued.abort();
  assert.equal((await waiting).name, "AbortError");
  await until("the queued job left", async () => (await queueDepth()) === 0);
  const next = post({ label: 6, steps: 2 });
  await until("the new job waits in the freed slot", async () => (await queueDepth()) === 1);

  // The running job (1000 steps) stops at its next step, not at its end, and the waiting one runs.
  running.abort();
  assert.equal((await first).name, "AbortError");
  await until("the worker stopped the running job", async () => (await abortedJobs()) === 1);
  const served = await next;
  assert.equal(served.status, 200);
  assert.equal((await served.json()).steps, 2);
});

serverTest("closing a Server-Sent Events stream cancels its job", async () => {
  const client = new AbortController();
  await startLongJob(client);
  client.abort();
  await until("the worker stopped the streamed job", async () => (await abortedJobs()) === 2);
  assert.equal(await metric("ditserve_jobs_running"), 0);
});

serverTest(
  "a worker crash or a lost device fails the job with 503; a new worker serves the next",
  async () => {
    const failures: [number, RegExp][] = [[CRASH_SEED, /GPU worker crashed/], [LOST_SEED, /GPU device lost/]];
    for (const [seed, message] of failures) {
      const failed = await post({ label: 3, steps: 4, seed });
      assert.equal(failed.status, 503);
      assert.match((await failed.json()).error, message);
      const recovered = await post({ label: 3, steps: 2 });
      assert.equal(recovered.status, 200);
      assert.equal((await fetch(`${server.url}/ready`)).status, 200);
    }
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /^ditserve_worker_restarts_total 2$/m);
  },
);

serverTest("shutdown answers the job in flight with 503 and closes the port", async () => {
  const inFlight = post({ label: 9, steps: 1000 });
  await until("the job runs", async () => (await metric("ditserve_jobs_running")) === 1);
  await server.shutdown();
  const res = await inFlight;
  assert.equal(res.status, 503);
  assert.match((await res.json()).error, /shutting down/);
  await assert.rejects(fetch(`${server.url}/health`));
});
