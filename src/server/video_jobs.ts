// Video jobs (POST /v1/videos): a job is answered at once and runs on the same GPU queue as the image routes,
// owned by this store rather than by the request that made it, so a client that disconnects finds it again
// by id. Its progress (steps done), its file or its error stay readable until `retentionSeconds` after it
// ends; then the job and its bytes are dropped. At most `capacity` jobs are held (queued, running or kept),
// beyond that 429.
import type { VideoFormat } from "../pipeline/video/encode.ts";
import { ApiError } from "./api_error.ts";
import type { GenerationService, Submission } from "./generation_service.ts";

export type VideoStatus = "queued" | "in_progress" | "completed" | "failed";

export interface VideoJob {
  readonly id: string;
  readonly submission: Submission & { videoFormat: VideoFormat };
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  status: VideoStatus;
  /** Denoising steps finished (of submission.request.steps). */
  stepsDone: number;
  completedAt: number | null;
  /** When a finished job is dropped; null while it is queued or running. */
  expiresAt: number | null;
  /** The video file, once completed. */
  bytes: Uint8Array | null;
  /** GPU seconds of the run, once completed. */
  generateSeconds: number | null;
  /** The steps the cache strategy skipped, once completed (the conditional pass' with separate CFG caches). */
  cachedSteps: number[] | null;
  /** The unconditional pass' cached steps, with separate CFG caches (cache-dit's cfg_cached_steps). */
  cfgCachedSteps: number[] | null;
  error: ApiError | null;
}

export interface VideoJobSettings {
  capacity: number;
  retentionSeconds: number;
  /** How long a job may wait and run before it fails with 504. */
  timeoutSeconds: number;
  /** Frames x width x height a request may ask for (checked when the request is resolved). */
  maxVideoPixels: number;
  /** Per format: null when the server can write it, otherwise why not (ffmpeg missing). */
  formats: Record<VideoFormat, string | null>;
}

type Watcher = (job: VideoJob) => void;

interface Held {
  job: VideoJob;
  controller: AbortController;
  watchers: Set<Watcher>;
}

const finished = (job: VideoJob) => job.status === "completed" || job.status === "failed";

export class VideoJobs {
  readonly #held = new Map<string, Held>();
  #sweep: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly generator: Pick<GenerationService, "submit">,
    readonly settings: VideoJobSettings,
  ) {}

  /** Queues the job; throws 400 for a format the server cannot write, 429 when this store or the queue is full. */
  create(submission: Submission & { videoFormat: VideoFormat }): VideoJob {
    const unavailable = this.settings.formats[submission.videoFormat];
    if (unavailable !== null) throw new ApiError(400, `response_format: ${unavailable}`, "response_format");
    if (this.#held.size >= this.settings.capacity) throw this.#full();
    const job: VideoJob = {
      id: `video_${crypto.randomUUID().replaceAll("-", "")}`,
      submission,
      createdAt: Date.now(),
      status: "queued",
      stepsDone: 0,
      completedAt: null,
      expiresAt: null,
      bytes: null,
      generateSeconds: null,
      cachedSteps: null,
      cfgCachedSteps: null,
      error: null,
    };
    const held: Held = { job, controller: new AbortController(), watchers: new Set() };
    const changed = () => held.watchers.forEach((watch) => watch(job));
    // Throws 429 synchronously when the GPU queue is full; then nothing is held.
    const outcome = this.generator.submit(submission, {
      signal: held.controller.signal,
      timeout: { seconds: this.settings.timeoutSeconds, setting: "VIDEO_TIMEOUT_S" },
      onStart: () => {
        job.status = "in_progress";
        changed();
      },
      onStep: (progress) => {
        job.stepsDone = progress.step + 1;
        changed();
      },
    });
    this.#held.set(job.id, held);
    outcome.then(
      ({ output, timings }) => {
        job.bytes = output.video ?? null;
        job.generateSeconds = timings.generate_seconds;
        job.cachedSteps = output.cache.cachedSteps;
        job.cfgCachedSteps = output.cache.cfg?.cachedSteps ?? null;
        job.status = "completed";
      },
      (e) => {
        job.error = ApiError.from(e);
        job.status = "failed";
      },
    ).finally(() => this.#finish(held));
    return job;
  }

  /** 404 naming the id when it is unknown (never made, deleted, or expired). */
  get(id: string): VideoJob {
    return this.#find(id).job;
  }

  /** Drops the job and its file; a queued or running one is cancelled first (its watchers see it fail). */
  delete(id: string): VideoJob {
    const held = this.#find(id);
    this.#held.delete(id);
    if (!finished(held.job)) {
      held.job.error = new ApiError(409, `video ${id} was deleted before it finished`);
      held.job.status = "failed";
      held.controller.abort(held.job.error);
      held.watchers.forEach((watch) => watch(held.job));
    }
    held.job.bytes = null;
    held.watchers.clear();
    this.#schedule();
    return held.job;
  }

  /** Calls `watch` on every change of the job (status, steps done) until the returned function is called. */
  watch(id: string, watch: Watcher): () => void {
    const { watchers } = this.#find(id);
    watchers.add(watch);
    return () => watchers.delete(watch);
  }

  /** Stops the expiry timer (the generator's shutdown cancels the jobs themselves). */
  close(): void {
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
  }

  #find(id: string): Held {
    const held = this.#held.get(id);
    if (held) return held;
    throw new ApiError(
      404,
      `no video ${JSON.stringify(id)}: never created, deleted, or expired (finished videos are kept ` +
        `${this.settings.retentionSeconds} s, VIDEO_RETENTION_S)`,
      "id",
    );
  }

  #full(): ApiError {
    const expiries = [...this.#held.values()].map(({ job }) => job.expiresAt).filter((t) => t !== null);
    const next = expiries.length > 0
      ? Math.max(1, Math.ceil((Math.min(...expiries) - Date.now()) / 1000))
      : null;
    return new ApiError(
      429,
      `too many videos: ${this.#held.size} are queued, running or kept (MAX_VIDEO_JOBS ` +
        `${this.settings.capacity}; finished ones are kept ${this.settings.retentionSeconds} s, or until ` +
        `deleted)` + (next === null ? "" : `; retry after ${next} s`),
      undefined,
      next === null ? {} : { "Retry-After": String(next) },
    );
  }

  #finish(held: Held): void {
    const { job } = held;
    job.completedAt = Date.now();
    if (this.#held.get(job.id) !== held) return; // deleted while it ran
    job.expiresAt = job.completedAt + this.settings.retentionSeconds * 1000;
    held.watchers.forEach((watch) => watch(job));
    held.watchers.clear();
    this.#schedule();
  }

  /** One timer, for the earliest expiry; each firing drops what has expired and sets the next. */
  #schedule(): void {
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
    const expiries = [...this.#held.values()].map(({ job }) => job.expiresAt).filter((t) => t !== null);
    if (expiries.length === 0) return;
    this.#sweep = setTimeout(() => {
      const now = Date.now();
      for (const [id, { job }] of this.#held) {
        if (job.expiresAt !== null && job.expiresAt <= now) {
          this.#held.delete(id);
          job.bytes = null;
        }
      }
      this.#schedule();
    }, Math.max(0, Math.min(...expiries) - Date.now()));
    Deno.unrefTimer(this.#sweep);
  }
}
