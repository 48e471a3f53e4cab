// The HTTP thread's handle on the GPU worker: starts it, runs one job at a time on it, forwards aborts, and
// replaces it when it crashes or loses its device (the job in flight fails with WorkerCrashedError, later
// jobs run on the new worker).
import type { DecisionCosts } from "../cache/decision_path.ts";
import type { PoolStats } from "../gpu/pool.ts";
import type { ModelCard } from "../pipeline/model_card.ts";
import { SharedAbort } from "./shared_abort.ts";
import type {
  FromWorker,
  GenerationJob,
  JobFailureKind,
  JobOutput,
  Preview,
  StepProgress,
  ToWorker,
} from "./worker_protocol.ts";

export type WorkerFactory = () => Worker;

/** How long a closing worker may take to release the GPU before it is terminated. */
const CLOSE_GRACE_MS = 5_000;

export const spawnGpuWorker: WorkerFactory = () =>
  new Worker(new URL("./gpu_worker.ts", import.meta.url).href, { type: "module" });

/** The worker died (uncaught error, device lost) while a job was running; it is being replaced. */
export class WorkerCrashedError extends Error {}
/** No worker can take jobs: it failed to start, or the server is shutting down. */
export class WorkerUnavailableError extends Error {}
export class JobFailedError extends Error {
  /** `field`: the request field at fault, for bad_request. */
  constructor(readonly kind: JobFailureKind, message: string, readonly field?: string) {
    super(message);
  }
}

export interface WorkerInfo {
  adapter: string;
  backend: string;
  /** The cache decision paths' unit costs on the adapter, measured at start-up. */
  decisionCosts?: DecisionCosts;
}

export interface WorkerStatus {
  state: "starting" | "ready" | "failed" | "closed";
  info: WorkerInfo | null;
  error: string | null;
}

export interface GpuWorkerOptions {
  onPoolStats?(stats: PoolStats): void;
  onRestart?(reason: string): void;
  /** How each job ended on the worker (a cancelled request answers before its job has stopped). */
  onJobEnd?(outcome: JobOutcome): void;
  /** How long an aborted job may take to reach its next step before the worker is deemed hung (30 s). */
  abortGraceMs?: number;
}

export type JobOutcome = "done" | JobFailureKind | "crashed" | "unavailable";

export interface RunOptions {
  signal: AbortSignal;
  onStep?: (progress: StepProgress) => void;
  /** The partial images of the steps the job lists in `previews`. */
  onPreview?: (preview: Preview) => void;
}

interface InFlight extends Omit<RunOptions, "signal"> {
  id: number;
  resolve(output: JobOutput): void;
  reject(error: Error): void;
}

export class GpuWorker {
  #worker!: Worker;
  #aborts!: SharedAbort;
  #status: WorkerStatus = { state: "starting", info: null, error: null };
  #ready!: Promise<WorkerInfo>;
  #settleReady!: { resolve(info: WorkerInfo): void; reject(error: Error): void };
  #current: InFlight | null = null;
  #nextId = 1;

  /** `preload`: models loaded before the worker reports ready. */
  constructor(
    private readonly spawn: WorkerFactory,
    private readonly preload: ModelCard[],
    private readonly options: GpuWorkerOptions = {},
  ) {
    this.#start();
  }

  status(): WorkerStatus {
    return { ...this.#status };
  }

  /** Resolves once the worker can take jobs; rejects with WorkerUnavailableError if it cannot start. */
  ready(): Promise<WorkerInfo> {
    return this.#ready;
  }

  async run(job: GenerationJob, options: RunOptions): Promise<JobOutput> {
    await this.#ready;
    options.signal.throwIfAborted();
    if (this.#current) {
      throw new Error("GpuWorker.run: a job is already running (the queue runs one at a time)");
    }
    const worker = this.#worker;
    const id = this.#nextId++;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    const aborts = this.#aborts;
    const abort = () => {
      aborts.abort(id);
      // A worker that cannot reach its next step (a hung GPU) would hold the queue forever: replace it.
      const grace = this.options.abortGraceMs ?? 30_000;
      watchdog = setTimeout(
        () => this.#crash(worker, `GPU worker did not stop within ${grace / 1000} s of an abort`),
        grace,
      );
    };
    options.signal.addEventListener("abort", abort, { once: true });
    try {
      return await new Promise<JobOutput>((resolve, reject) => {
        this.#current = { id, onStep: options.onStep, onPreview: options.onPreview, resolve, reject };
        this.#send(worker, { type: "generate", id, job });
      });
    } finally {
      clearTimeout(watchdog);
      options.signal.removeEventListener("abort", abort);
    }
  }

  /**
   * Asks the worker to release the GPU and end (terminating it if it has not within CLOSE_GRACE_MS); a job
   * in flight fails with WorkerUnavailableError at once.
   */
  close(): void {
    if (this.#status.state === "closed") return;
    const worker = this.#worker;
    // The job in flight stops at its next step; then the worker releases the GPU.
    if (this.#current) this.#aborts.abort(this.#current.id);
    this.#send(worker, { type: "close" });
    Deno.unrefTimer(setTimeout(() => worker.terminate(), CLOSE_GRACE_MS));
    this.#status = { ...this.#status, state: "closed", error: "server is shutting down" };
    this.#settleReady.reject(new WorkerUnavailableError("server is shutting down"));
    this.#finish("unavailable")?.reject(new WorkerUnavailableError("server is shutting down"));
  }

  #start(): void {
    const worker = this.spawn();
    this.#worker = worker;
    this.#aborts = new SharedAbort();
    this.#status = { state: "starting", info: null, error: null };
    this.#ready = new Promise((resolve, reject) => (this.#settleReady = { resolve, reject }));
    this.#ready.catch(() => {}); // callers see the rejection through ready()/run()
    worker.onmessage = (e: MessageEvent<FromWorker>) => this.#receive(worker, e.data);
    worker.onerror = (e) => {
      e.preventDefault(); // handled here: an uncaught worker error must not take the server down
      this.#crash(worker, `GPU worker crashed: ${e.message}`);
    };
    worker.onmessageerror = () => this.#crash(worker, "GPU worker sent an unreadable message");
    this.#send(worker, { type: "init", preload: this.preload, aborts: this.#aborts.buffer });
  }

  #send(worker: Worker, message: ToWorker): void {
    if (worker === this.#worker && this.#status.state !== "closed") worker.postMessage(message);
  }

  #finish(outcome: JobOutcome): InFlight | null {
    const current = this.#current;
    this.#current = null;
    if (current) this.options.onJobEnd?.(outcome);
    return current;
  }

  #receive(worker: Worker, m: FromWorker): void {
    if (worker !== this.#worker || this.#status.state === "closed") return;
    switch (m.type) {
      case "ready":
        this.#status = {
          state: "ready",
          info: { adapter: m.adapter, backend: m.backend, decisionCosts: m.decisionCosts },
          error: null,
        };
        this.options.onPoolStats?.(m.pool);
        this.#settleReady.resolve(this.#status.info!);
        break;
      case "fatal":
        this.#fail(worker, m.message);
        break;
      case "step":
        if (this.#current?.id === m.id) this.#current.onStep?.(m.progress);
        break;
      case "preview":
        if (this.#current?.id === m.id) this.#current.onPreview?.(m.preview);
        break;
      case "done":
        this.options.onPoolStats?.(m.pool);
        if (this.#current?.id === m.id) this.#finish("done")!.resolve(m.output);
        break;
      case "failed":
        if (m.pool) this.options.onPoolStats?.(m.pool);
        if (m.kind === "gpu_lost") return this.#crash(worker, `GPU device lost: ${m.message}`);
        if (this.#current?.id === m.id) {
          this.#finish(m.kind)!.reject(new JobFailedError(m.kind, m.message, m.field));
        }
        break;
      case "lost":
        this.#crash(worker, `GPU device lost: ${m.reason}`);
        break;
    }
  }

  /** A worker that never became ready is not restarted (that would loop); a ready one is replaced. */
  #crash(worker: Worker, reason: string): void {
    if (worker !== this.#worker || this.#status.state === "closed") return;
    const wasReady = this.#status.state === "ready";
    worker.terminate();
    this.#finish("crashed")?.reject(new WorkerCrashedError(reason));
    this.options.onRestart?.(reason);
    if (wasReady) this.#start();
    else this.#fail(worker, reason);
  }

  #fail(worker: Worker, message: string): void {
    worker.terminate();
    this.#status = { state: "failed", info: null, error: message };
    this.#settleReady.reject(new WorkerUnavailableError(message));
    this.#finish("unavailable")?.reject(new WorkerUnavailableError(message));
  }
}
