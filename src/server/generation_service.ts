// One generation from the HTTP side: queue it (bounded FIFO), run it on the GPU worker, enforce the request
// timeout, and turn every way it can end into an ApiError with the status the API promises.
import type { GenerationRequest } from "../pipeline/request.ts";
import { ApiError } from "./api_error.ts";
import {
  type GpuWorker,
  JobFailedError,
  WorkerCrashedError,
  WorkerUnavailableError,
} from "./gpu_worker_client.ts";
import { type JobQueue, QueueFullError } from "./job_queue.ts";
import type { ServerMetrics } from "./metrics.ts";
import type { ModelEntry } from "./model_catalog.ts";
import type { GenerationJob, JobOutput, Preview, StepProgress } from "./worker_protocol.ts";

/** A resolved request for one model, what it brings besides, and how its PNGs (or its video) are written. */
export interface Submission
  extends Pick<GenerationJob, "layout" | "previews" | "embeddings" | "latents" | "videoFormat"> {
  model: ModelEntry;
  request: GenerationRequest;
}

export interface GenerationOutcome {
  output: JobOutput;
  adapter: string;
  timings: { queue_seconds: number; generate_seconds: number; total_seconds: number };
}

export interface SubmitOptions {
  /** The client's signal: aborting it (disconnect) cancels the job, queued or running. */
  signal: AbortSignal;
  /** The job has left the queue and runs on the GPU worker. */
  onStart?: () => void;
  onStep?: (progress: StepProgress) => void;
  onPreview?: (preview: Preview) => void;
  /** Overrides the request timeout (video jobs, which no request waits on); `setting` names it in the 504. */
  timeout?: { seconds: number; setting: string };
}

const seconds = (ms: number) => Number((ms / 1000).toFixed(4));

function toJob(submission: Submission, progress: boolean): GenerationJob {
  const { model, ...rest } = submission;
  return { card: model.card, progress, ...rest };
}

/** Rejects with the signal's reason when it aborts. */
function abandoned(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) =>
    signal.addEventListener("abort", () => reject(signal.reason), { once: true })
  );
}

export class GenerationService {
  readonly #shutdown = new AbortController();

  constructor(
    private readonly worker: GpuWorker,
    private readonly queue: JobQueue,
    private readonly metrics: ServerMetrics,
    private readonly timeoutSeconds: number,
  ) {}

  /** Throws ApiError 429 synchronously when the queue is full, so a stream is never opened for it. */
  submit(submission: Submission, options: SubmitOptions): Promise<GenerationOutcome> {
    const received = performance.now();
    let started = received;
    const deadline = this.#deadline(
      options.timeout ?? { seconds: this.timeoutSeconds, setting: "REQUEST_TIMEOUT_S" },
    );
    const signal = AbortSignal.any([options.signal, deadline.signal, this.#shutdown.signal]);
    const job = toJob(submission, options.onStep !== undefined);
    let pending: Promise<JobOutput>;
    try {
      pending = this.queue.enqueue((s) => {
        started = performance.now();
        options.onStart?.();
        return this.worker.run(job, { signal: s, onStep: options.onStep, onPreview: options.onPreview });
      }, signal);
    } catch (e) {
      deadline.clear();
      throw this.#explain(e, signal);
    }
    // Answer as soon as the request is cancelled or times out; the queue slot stays taken until the worker
    // has actually stopped the job.
    return Promise.race([pending, abandoned(signal)]).then(
      (output) => this.#outcome(output, received, started),
      (e) => {
        throw this.#explain(e, signal);
      },
    ).finally(deadline.clear);
  }

  /** Cancels every queued and running job (they answer 503) and refuses new ones. */
  shutdown(): void {
    this.#shutdown.abort(new ApiError(503, "server is shutting down"));
  }

  #deadline(timeout: { seconds: number; setting: string }): { signal: AbortSignal; clear(): void } {
    const controller = new AbortController();
    const message = `request timed out after ${timeout.seconds} s (${timeout.setting})`;
    const timer = setTimeout(() => controller.abort(new ApiError(504, message)), timeout.seconds * 1000);
    return { signal: controller.signal, clear: () => clearTimeout(timer) };
  }

  #outcome(output: JobOutput, received: number, started: number): GenerationOutcome {
    this.metrics.generation(output.seconds, output.cache);
    return {
      output,
      adapter: this.worker.status().info?.adapter ?? "unknown",
      timings: {
        queue_seconds: seconds(started - received),
        generate_seconds: Number(output.seconds.toFixed(4)),
        total_seconds: seconds(performance.now() - received),
      },
    };
  }

  #explain(e: unknown, signal: AbortSignal): ApiError {
    if (e instanceof ApiError) return e;
    if (e instanceof QueueFullError) {
      return new ApiError(429, e.message, undefined, { "Retry-After": String(e.retryAfterSeconds) });
    }
    if (e instanceof WorkerCrashedError || e instanceof WorkerUnavailableError) {
      return new ApiError(503, e.message);
    }
    if (e instanceof JobFailedError && e.kind === "bad_request") return new ApiError(400, e.message, e.field);
    if (signal.aborted) {
      return signal.reason instanceof ApiError
        ? signal.reason
        : new ApiError(408, "request cancelled: the client went away");
    }
    return new ApiError(500, `generation failed: ${(e as Error).message}`);
  }
}
