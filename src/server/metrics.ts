// Prometheus metrics through prom-client (text format, histogram buckets and escaping are its job). One
// registry per app, so that several apps in one process (tests) never share counters.
import client from "prom-client";
import type { PoolStats } from "../gpu/pool.ts";
import type { CacheStats } from "../cache/strategy.ts";

export class ServerMetrics {
  readonly registry = new client.Registry();
  readonly #requests = new client.Counter({
    name: "ditserve_http_requests_total",
    help: "HTTP requests answered, by route and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [this.registry],
  });
  readonly #generationSeconds = new client.Histogram({
    name: "ditserve_generation_seconds",
    help: "GPU time of each finished generation",
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly #steps = new client.Counter({
    name: "ditserve_steps_total",
    help: "Sampler steps by outcome: cached (blocks reused) or computed",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly #jobs = new client.Counter({
    name: "ditserve_jobs_total",
    help: "Jobs the GPU worker finished, by outcome (done, aborted, bad_request, internal, crashed, ...)",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly #restarts = new client.Counter({
    name: "ditserve_worker_restarts_total",
    help: "GPU worker replacements after a crash or device loss",
    registers: [this.registry],
  });
  readonly #poolBytes = new client.Gauge({
    name: "ditserve_gpu_pool_bytes",
    help: "GPU memory held by the worker's buffer pool (in use or free)",
    registers: [this.registry],
  });
  readonly #poolBuffers = new client.Gauge({
    name: "ditserve_gpu_pool_buffers",
    help: "GPU buffers held by the worker's buffer pool",
    registers: [this.registry],
  });

  /** The queue is read at scrape time. */
  constructor(queue: { readonly depth: number; readonly busy: boolean }) {
    new client.Gauge({
      name: "ditserve_queue_depth",
      help: "Generation jobs waiting for the GPU (not counting the running one)",
      registers: [this.registry],
      collect() {
        this.set(queue.depth);
      },
    });
    new client.Gauge({
      name: "ditserve_jobs_running",
      help: "Generation jobs running on the GPU worker (0 or 1)",
      registers: [this.registry],
      collect() {
        this.set(queue.busy ? 1 : 0);
      },
    });
  }

  request(method: string, route: string, status: number): void {
    this.#requests.inc({ method, route, status: String(status) });
  }

  generation(seconds: number, cache: CacheStats): void {
    this.#generationSeconds.observe(seconds);
    this.#steps.inc({ outcome: "cached" }, cache.cachedSteps.length);
    this.#steps.inc({ outcome: "computed" }, cache.computedSteps.length);
  }

  pool(stats: PoolStats): void {
    this.#poolBytes.set(stats.bytesHeld);
    this.#poolBuffers.set(stats.buffersHeld);
  }

  jobEnded(outcome: string): void {
    this.#jobs.inc({ outcome });
  }

  restart(): void {
    this.#restarts.inc();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
