// deno task bench:server [--clients 8] [--seconds 60] [--steps 28] [--url http://host:port] [--api-key K] [--json]
// Load test of the HTTP server: N clients post /v1/generate back to back for the duration while /health is
// probed every ~200 ms, and the server's memory and GPU buffer count are sampled every second so the first
// and last minute (first and last 20% of shorter runs) can be compared. Without --url the server runs in
// this process (startServer), so its memory is this process's; with --url it comes from /metrics.
import { parseArgs } from "node:util";
import { markdownTable } from "markdown-table";
import { z } from "zod";

const HEALTH_INTERVAL_MS = 200;
const RESOURCE_INTERVAL_MS = 1000;
const READY_TIMEOUT_MS = 300_000;
const HEALTH_TARGET_MS = 50;
/** Metric names read from /metrics: prom-client's process defaults (when exported) and the pool gauges. */
const METRICS = {
  rss: "process_resident_memory_bytes",
  heapUsed: "nodejs_heap_size_used_bytes",
  gpuBuffers: "ditserve_gpu_pool_buffers",
  gpuBytes: "ditserve_gpu_pool_bytes",
  queueDepth: "ditserve_queue_depth",
};

const intFlag = (name: string, min: number, max: number) => {
  const error = `--${name} must be an integer in ${min}..${max}`;
  return z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};

const flags = z.object({
  clients: intFlag("clients", 1, 64),
  seconds: intFlag("seconds", 1, 86_400),
  steps: intFlag("steps", 1, 1000),
  url: z.url({ error: "--url must be an http(s) URL" }).optional(),
  "api-key": z.string().optional(),
  json: z.boolean(),
});
type Flags = z.infer<typeof flags>;

interface Target {
  url: string;
  headers: Record<string, string>;
  /** Server memory in bytes, null where unknown. */
  memory(): Promise<{ rss: number | null; heapUsed: number | null }>;
  close(): Promise<void>;
}

interface Timed {
  /** Milliseconds since the run started. */
  at: number;
  ms: number;
  status: number;
}

interface ResourceSample {
  at: number;
  rss: number | null;
  heapUsed: number | null;
  gpuBuffers: number | null;
  gpuBytes: number | null;
  queueDepth: number | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

function parseFlags(args: string[]): Flags {
  const { values } = parseArgs({
    args,
    options: {
      clients: { type: "string", default: "8" },
      seconds: { type: "string", default: "60" },
      steps: { type: "string", default: "28" },
      url: { type: "string" },
      "api-key": { type: "string" },
      json: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const parsed = flags.safeParse(values);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => i.message).join("; "));
  return parsed.data;
}

/** The value of an unlabelled sample of `name` in Prometheus text, summed over its label sets. */
function metricValue(text: string, name: string): number | null {
  const line = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "gm");
  const values = [...text.matchAll(line)].map((m) => Number(m[1]));
  return values.length > 0 ? values.reduce((a, b) => a + b, 0) : null;
}

async function getText(target: Target, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(new URL(path, target.url), { headers: target.headers });
  return { status: response.status, text: await response.text() };
}

async function inProcessTarget(): Promise<Target> {
  // Loaded only here: against --url this process needs neither the engine nor a GPU.
  const { startServer } = await import("../server/start.ts");
  const server = await startServer({ host: "127.0.0.1", port: 0 });
  return {
    url: server.url,
    headers: {},
    memory: () => {
      const { rss, heapUsed } = Deno.memoryUsage();
      return Promise.resolve({ rss, heapUsed });
    },
    close: () => server.shutdown(),
  };
}

function remoteTarget(url: string, apiKey: string | undefined): Target {
  const target: Target = {
    url,
    headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
    memory: async () => {
      const { text } = await getText(target, "/metrics");
      return { rss: metricValue(text, METRICS.rss), heapUsed: metricValue(text, METRICS.heapUsed) };
    },
    close: () => Promise.resolve(),
  };
  return target;
}

async function waitReady(target: Target): Promise<string> {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  for (;;) {
    const { status, text } = await getText(target, "/ready").catch(() => ({ status: 0, text: "" }));
    if (status === 200) return JSON.parse(text).adapter ?? "unknown";
    if (performance.now() > deadline) throw new Error(`${target.url}/ready still answers ${status}: ${text}`);
    await sleep(500);
  }
}

/** One generation; the status is 0 when the connection itself failed. */
async function generateOnce(target: Target, steps: number, label: number, seed: number): Promise<number> {
  try {
    const response = await fetch(new URL("/v1/generate", target.url), {
      method: "POST",
      headers: { ...target.headers, "Content-Type": "application/json", Accept: "image/png" },
      body: JSON.stringify({ label: String(label), steps, seed }),
    });
    await response.arrayBuffer();
    if (response.status === 429) await sleep(1000 * Number(response.headers.get("Retry-After") ?? 1));
    return response.status;
  } catch {
    return 0;
  }
}

async function client(target: Target, id: number, steps: number, start: number, end: number, out: Timed[]) {
  for (let i = 0; performance.now() < end; i++) {
    const t0 = performance.now();
    const status = await generateOnce(target, steps, (id + i) % 10, id * 1_000_000 + i);
    out.push({ at: t0 - start, ms: performance.now() - t0, status });
  }
}

async function probeHealth(target: Target, start: number, busy: () => boolean, out: Timed[]) {
  while (busy()) {
    const t0 = performance.now();
    let status = 0;
    try {
      const response = await fetch(new URL("/health", target.url));
      await response.text();
      status = response.status;
    } catch {
      // Recorded as status 0.
    }
    const ms = performance.now() - t0;
    out.push({ at: t0 - start, ms, status });
    await sleep(HEALTH_INTERVAL_MS - ms);
  }
}

async function sampleResources(target: Target, start: number, busy: () => boolean, out: ResourceSample[]) {
  while (busy()) {
    const t0 = performance.now();
    const [memory, metrics] = await Promise.all([
      target.memory().catch(() => ({ rss: null, heapUsed: null })),
      getText(target, "/metrics").catch(() => ({ status: 0, text: "" })),
    ]);
    out.push({
      at: t0 - start,
      ...memory,
      gpuBuffers: metricValue(metrics.text, METRICS.gpuBuffers),
      gpuBytes: metricValue(metrics.text, METRICS.gpuBytes),
      queueDepth: metricValue(metrics.text, METRICS.queueDepth),
    });
    await sleep(RESOURCE_INTERVAL_MS - (performance.now() - t0));
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function latency(samples: Timed[]) {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  return { p50: percentile(ms, 50), p95: percentile(ms, 95), max: ms.at(-1) ?? NaN };
}

function mean(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length > 0 ? known.reduce((a, b) => a + b, 0) / known.length : null;
}

/** Mean of each resource over the first and the last window (one minute, or 20% of shorter runs). */
function flatness(samples: ResourceSample[], durationMs: number) {
  const windowMs = durationMs >= 120_000 ? 60_000 : 0.2 * durationMs;
  const first = samples.filter((s) => s.at <= windowMs);
  const last = samples.filter((s) => s.at >= durationMs - windowMs);
  const compare = (key: "rss" | "heapUsed" | "gpuBuffers" | "gpuBytes") => {
    const [a, b] = [mean(first.map((s) => s[key])), mean(last.map((s) => s[key]))];
    return { first: a, last: b, change: a && b !== null ? (b - a) / a : null };
  };
  return {
    windowSeconds: windowMs / 1000,
    rss: compare("rss"),
    heapUsed: compare("heapUsed"),
    gpuBuffers: compare("gpuBuffers"),
    gpuBytes: compare("gpuBytes"),
    meanQueueDepth: mean(samples.map((s) => s.queueDepth)),
  };
}

async function run(options: Flags) {
  const target = options.url ? remoteTarget(options.url, options["api-key"]) : await inProcessTarget();
  try {
    const adapter = await waitReady(target);
    // The first generation compiles pipelines and fills the buffer pool; it is not part of the figures.
    await generateOnce(target, options.steps, 0, 0);
    const requests: Timed[] = [];
    const health: Timed[] = [];
    const resources: ResourceSample[] = [];
    const start = performance.now();
    const end = start + options.seconds * 1000;
    let busy = true;
    const watchers = [
      probeHealth(target, start, () => busy, health),
      sampleResources(target, start, () => busy, resources),
    ];
    const clients = Array.from(
      { length: options.clients },
      (_, id) => client(target, id, options.steps, start, end, requests),
    );
    await Promise.all(clients);
    const elapsedMs = performance.now() - start;
    busy = false;
    await Promise.all(watchers);
    return summarize(options, target.url, adapter, elapsedMs, requests, health, resources);
  } finally {
    await target.close();
  }
}

function summarize(
  options: Flags,
  url: string,
  adapter: string,
  elapsedMs: number,
  requests: Timed[],
  health: Timed[],
  resources: ResourceSample[],
) {
  const statusCounts: Record<string, number> = {};
  for (const r of requests) statusCounts[r.status] = (statusCounts[r.status] ?? 0) + 1;
  const ok = requests.filter((r) => r.status === 200);
  const failed = requests.filter((r) => r.status === 0 || r.status >= 500).length;
  const healthLatency = latency(health);
  return {
    url,
    adapter,
    clients: options.clients,
    seconds: elapsedMs / 1000,
    steps: options.steps,
    requests: requests.length,
    images: ok.length,
    imagesPerSecond: ok.length / (elapsedMs / 1000),
    latencyMs: latency(ok),
    statusCounts,
    serverErrors: failed,
    health: {
      probes: health.length,
      ...healthLatency,
      /** Probes slower than the target: when (seconds into the run) and how slow. */
      slow: health.filter((h) => h.ms > HEALTH_TARGET_MS).map((h) => ({ atSeconds: h.at / 1000, ms: h.ms })),
      failed: health.filter((h) => h.status !== 200).length,
    },
    resources: flatness(resources, elapsedMs),
  };
}

type Report = Awaited<ReturnType<typeof run>>;

const mb = (bytes: number | null) => (bytes === null ? "n/a" : `${(bytes / 2 ** 20).toFixed(1)} MiB`);
const pct = (change: number | null) => (change === null ? "n/a" : `${(100 * change).toFixed(1)}%`);
const ms = (value: number) => `${value.toFixed(1)} ms`;
const count = (value: number | null) => (value === null ? "n/a" : value.toFixed(1));

function slowProbes(slow: { atSeconds: number; ms: number }[]): string {
  if (slow.length === 0) return "0";
  const shown = slow.slice(0, 5).map((p) => `${ms(p.ms)} at ${p.atSeconds.toFixed(1)} s`);
  return `${slow.length} (${shown.join(", ")}${slow.length > shown.length ? ", ..." : ""})`;
}

function markdown(r: Report): string {
  const { rss, heapUsed, gpuBuffers, gpuBytes, windowSeconds } = r.resources;
  const window = `${windowSeconds.toFixed(0)} s`;
  return markdownTable([
    ["metric", "value"],
    ["adapter", r.adapter],
    ["clients / duration / steps", `${r.clients} / ${r.seconds.toFixed(1)} s / ${r.steps}`],
    ["requests (images)", `${r.requests} (${r.images})`],
    ["throughput", `${r.imagesPerSecond.toFixed(3)} images/s`],
    ["latency p50 / p95 / max", `${ms(r.latencyMs.p50)} / ${ms(r.latencyMs.p95)} / ${ms(r.latencyMs.max)}`],
    ["status counts", Object.entries(r.statusCounts).map(([s, n]) => `${s}: ${n}`).join(", ")],
    ["5xx or failed connections", String(r.serverErrors)],
    ["/health probes", `${r.health.probes} (${r.health.failed} failed)`],
    ["/health p50 / p95 / max", `${ms(r.health.p50)} / ${ms(r.health.p95)} / ${ms(r.health.max)}`],
    [`/health over ${HEALTH_TARGET_MS} ms`, slowProbes(r.health.slow)],
    ["mean queue depth (waiting jobs)", count(r.resources.meanQueueDepth)],
    [`rss first / last ${window}`, `${mb(rss.first)} / ${mb(rss.last)} (${pct(rss.change)})`],
    [
      `heap used first / last ${window}`,
      `${mb(heapUsed.first)} / ${mb(heapUsed.last)} (${pct(heapUsed.change)})`,
    ],
    [
      `GPU buffers first / last ${window}`,
      `${count(gpuBuffers.first)} / ${count(gpuBuffers.last)} (${pct(gpuBuffers.change)})`,
    ],
    [
      `GPU pool first / last ${window}`,
      `${mb(gpuBytes.first)} / ${mb(gpuBytes.last)} (${pct(gpuBytes.change)})`,
    ],
  ]);
}

async function main(): Promise<number> {
  let options: Flags;
  try {
    options = parseFlags(Deno.args);
  } catch (error) {
    console.error(`bench:server: ${(error as Error).message}`);
    return 2;
  }
  const report = await run(options);
  console.log(options.json ? JSON.stringify(report) : markdown(report));
  if (report.serverErrors > 0) {
    console.error(`bench:server: ${report.serverErrors} requests got a 5xx or no answer`);
    return 1;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
