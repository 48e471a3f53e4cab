// The GPU worker: owns the WebGPU device, the loaded models and every generate() call, so that waiting on
// the GPU (mapAsync blocks the event loop for >= 11 ms) never stalls HTTP. Jobs arrive fully validated.
import { createStrategy } from "../cache/create.ts";
import { measureDecisionCosts } from "../cache/decision_path.ts";
import type { CacheStrategy } from "../cache/strategy.ts";
import { GpuContext } from "../gpu/context.ts";
import type { Decoded, StepEvent } from "../pipeline/generate.ts";
import type { ModelCard } from "../pipeline/model_card.ts";
import { type ImagePipeline, LatentsError, type RunOptions } from "../pipeline/pipelines/image_pipeline.ts";
import { loadPipeline } from "../pipeline/pipelines/load.ts";
import { RequestError } from "../pipeline/request.ts";
import { SchedulerConfigError } from "../pipeline/schedulers/schedule.ts";
import { encodeOutput, encodePngs, transferables } from "./job_output.ts";
import { SharedAbort } from "./shared_abort.ts";
import type { FromWorker, GenerationJob, JobFailureKind, ToWorker } from "./worker_protocol.ts";

const scope = self as unknown as {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
};

let ctx: GpuContext | null = null;
const models = new Map<string, Promise<ImagePipeline>>();
let aborts: SharedAbort | null = null;
/** The job in flight; closing waits for it so the device is never destroyed under a running job. */
let running: Promise<void> = Promise.resolve();

function loadModel(gpu: GpuContext, card: ModelCard): Promise<ImagePipeline> {
  let model = models.get(card.dir);
  if (!model) {
    model = loadPipeline(gpu, card);
    models.set(card.dir, model);
    model.catch(() => models.delete(card.dir));
  }
  return model;
}

async function init(preload: ModelCard[]): Promise<void> {
  try {
    const gpu = await GpuContext.create();
    ctx = gpu;
    gpu.gpu.device.lost.then((info) => {
      if (info.reason !== "destroyed") {
        scope.postMessage({ type: "lost", reason: info.message || info.reason });
      }
    });
    for (const card of preload) await loadModel(gpu, card);
    // Once per adapter: the strategies take the cheaper decision path from these (src/cache/decision_path.ts).
    const decisionCosts = await measureDecisionCosts(gpu);
    scope.postMessage({
      type: "ready",
      adapter: gpu.gpu.info.adapter,
      backend: gpu.gpu.info.backend,
      decisionCosts,
      pool: gpu.pool.stats(),
    });
  } catch (e) {
    scope.postMessage({ type: "fatal", message: (e as Error).message });
  }
}

/** A failure that the request caused (bad_request, with its field), or how the run was stopped. */
function failure(gpu: GpuContext, e: unknown, signal: AbortSignal): { kind: JobFailureKind; field?: string } {
  if (e instanceof RequestError) return { kind: "bad_request", field: e.field };
  if (e instanceof LatentsError) return { kind: "bad_request", field: "latents" };
  if (e instanceof SchedulerConfigError) return { kind: "bad_request" };
  if (signal.aborted) return { kind: "aborted" };
  return { kind: gpu.gpu.healthy ? "internal" : "gpu_lost" };
}

function runOptions(
  id: number,
  job: GenerationJob,
  signal: AbortSignal,
  strategy: CacheStrategy,
): RunOptions {
  // Progress reads the decision log behind every step (no GPU stall), so it is asked for only when streamed.
  const onStep = (e: StepEvent) =>
    scope.postMessage({
      type: "step",
      id,
      progress: {
        step: e.step,
        steps: e.steps,
        cached: e.cached,
        diff: e.diff ?? null,
        blocks_run: e.blocksRun,
      },
    });
  const onPreview = (step: number, decoded: Decoded) => {
    const pngs = encodePngs(decoded, "each");
    scope.postMessage({ type: "preview", id, preview: { step, pngs } }, transferables({ pngs }));
  };
  return {
    strategy,
    signal,
    onStep: job.progress ? onStep : undefined,
    previews: job.previews.length > 0 ? { after: job.previews, onPreview } : undefined,
    embeddings: job.embeddings,
    latents: job.latents,
  };
}

async function run(gpu: GpuContext, id: number, job: GenerationJob, signal: AbortSignal): Promise<void> {
  let strategy: CacheStrategy | null = null;
  try {
    const pipeline = await loadModel(gpu, job.card);
    strategy = createStrategy(gpu, job.request.cache);
    const result = await pipeline.run(job.request, runOptions(id, job, signal, strategy));
    const encoded = await encodeOutput(result, job);
    scope.postMessage(
      {
        type: "done",
        id,
        output: { ...encoded, seconds: result.seconds, cache: result.cache, notes: result.notes },
        pool: gpu.pool.stats(),
      },
      transferables(encoded),
    );
  } catch (e) {
    const { kind, field } = failure(gpu, e, signal);
    const message = (e as Error).message;
    scope.postMessage({ type: "failed", id, kind, message, field, pool: gpu.pool.stats() });
  } finally {
    strategy?.release();
  }
}

scope.onmessage = (event) => {
  const message = event.data;
  switch (message.type) {
    case "init":
      aborts = new SharedAbort(message.aborts);
      init(message.preload);
      break;
    case "generate":
      if (ctx && aborts) running = run(ctx, message.id, message.job, aborts.signal(message.id));
      else {
        const failure = { kind: "gpu_lost" as const, message: "GPU not acquired", pool: null };
        scope.postMessage({ type: "failed", id: message.id, ...failure });
      }
      break;
    case "close":
      // Destroying the device here, not leaving it to a terminate(), lets WebGPU and the driver's threads
      // wind down before the worker's isolate goes away.
      running.finally(() => {
        ctx?.destroy();
        ctx = null;
        self.close();
      });
      break;
  }
};
