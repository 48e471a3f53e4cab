// Messages between the HTTP thread and the GPU worker. The HTTP thread never touches WebGPU: it sends fully
// validated jobs and receives PNG bytes (or a video model's encoded video), step events, partial images and
// pool statistics.
import type { DecisionCosts } from "../cache/decision_path.ts";
import type { CacheStats } from "../cache/strategy.ts";
import type { PoolStats } from "../gpu/pool.ts";
import type { Float32Tensor } from "../model/safetensors.ts";
import type { ModelCard } from "../pipeline/model_card.ts";
import type { GenerationRequest } from "../pipeline/request.ts";
import type { VideoFormat } from "../pipeline/video/encode.ts";

export interface GenerationJob {
  /** The model, its directory already checked to lie inside MODELS_DIR. */
  card: ModelCard;
  request: GenerationRequest;
  /** Send a `step` message after each step (for Server-Sent Events). */
  progress: boolean;
  /** "grid": one PNG with the images side by side; "each": one PNG per image. */
  layout: "grid" | "each";
  /** Video models: the file the frames are encoded to (at request.video.fps) instead of PNGs. */
  videoFormat?: VideoFormat;
  /** Steps after which the current latents are decoded and sent as a `preview` (partial images). */
  previews: number[];
  /** Precomputed text conditioning by diffusers' names, already checked against the model. */
  embeddings?: Record<string, Float32Tensor>;
  /** Starting latents in the pipeline's layout, already checked against the size. */
  latents?: Float32Array;
}

export interface StepProgress {
  step: number;
  steps: number;
  cached: boolean;
  diff: number | null;
  blocks_run: number;
}

/** The images decoded after `step`, one PNG each. */
export interface Preview {
  step: number;
  pngs: Uint8Array[];
}

export interface JobOutput {
  /** Empty for a video job. */
  pngs: Uint8Array[];
  /** A video job's file, in its videoFormat. */
  video?: Uint8Array;
  seconds: number;
  cache: CacheStats;
  /** What the pipeline changed in the request (a truncated prompt). */
  notes: string[];
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
  /** `decisionCosts`: what the cache decision paths cost on this adapter, measured at start-up. */
  | { type: "ready"; adapter: string; backend: string; decisionCosts: DecisionCosts; pool: PoolStats }
  /** The worker cannot serve at all (no adapter, model failed to load); it is not restarted. */
  | { type: "fatal"; message: string }
  | { type: "step"; id: number; progress: StepProgress }
  | { type: "preview"; id: number; preview: Preview }
  | { type: "done"; id: number; output: JobOutput; pool: PoolStats }
  /** `field`: the request field at fault, for bad_request. */
  | {
    type: "failed";
    id: number;
    kind: JobFailureKind;
    message: string;
    field?: string;
    pool: PoolStats | null;
  }
  /** The device was lost: the worker is unusable and must be replaced. */
  | { type: "lost"; reason: string };
