// Messages between the HTTP thread and the GPU worker. The HTTP thread never touches WebGPU: it sends fully
// validated jobs and receives PNG bytes, step events and pool statistics.
import type { CacheStats } from "../cache/strategy.ts";
import type { PoolStats } from "../gpu/pool.ts";
import type { ModelCard } from "../pipeline/model_card.ts";
import type { GenerationRequest } from "../pipeline/request.ts";

export interface GenerationJob {
  /** The model, its directory already checked to lie inside MODELS_DIR. */
  card: ModelCard;
  request: GenerationRequest;
  /** Send a `step` message after each step (for Server-Sent Events). */
  progress: boolean;
  /** "grid": one PNG with the images side by side; "each": one PNG per image. */
  layout: "grid" | "each";
}

export interface StepProgress {
  step: number;
  steps: number;
  cached: boolean;
  diff: number | null;
  blocks_run: number;
}

export interface JobOutput {
  pngs: Uint8Array[];
  seconds: number;
  cache: CacheStats;
}

/** Why a job failed inside the worker; the HTTP thread maps each kind to a status. */
export type JobFailureKind = "bad_request" | "aborted" | "gpu_lost" | "internal";

export type ToWorker =
  /** `aborts`: the SharedAbort cell through which the HTTP thread stops the running job between steps. */
  | { type: "init"; preload: ModelCard[]; aborts: SharedArrayBuffer }
  | { type: "generate"; id: number; job: GenerationJob }
  /** Release the GPU (after the job in flight, if any) and end the worker. */
  | { type: "close" };

export type FromWorker =
  | { type: "ready"; adapter: string; backend: string; pool: PoolStats }
  /** The worker cannot serve at all (no adapter, model failed to load); it is not restarted. */
  | { type: "fatal"; message: string }
  | { type: "step"; id: number; progress: StepProgress }
  | { type: "done"; id: number; output: JobOutput; pool: PoolStats }
  | { type: "failed"; id: number; kind: JobFailureKind; message: string; pool: PoolStats | null }
  /** The device was lost: the worker is unusable and must be replaced. */
  | { type: "lost"; reason: string };
