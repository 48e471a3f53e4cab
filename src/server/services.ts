// What createApp needs, built for real: the model catalog, one GPU worker (with the default model loaded),
// the bounded queue, metrics and the generation service. close() stops the worker.
import type { AppDeps } from "./app.ts";
import { GenerationService } from "./generation_service.ts";
import { GpuWorker, spawnGpuWorker, type WorkerFactory } from "./gpu_worker_client.ts";
import { JobQueue } from "./job_queue.ts";
import { ServerMetrics } from "./metrics.ts";
import { ModelCatalog } from "./model_catalog.ts";
import type { ServerOptions } from "./options.ts";
import { VideoJobs } from "./video_jobs.ts";
import { videoFormatSupport } from "../pipeline/video/encode.ts";

export interface Services {
  deps: AppDeps;
  worker: GpuWorker;
  /** Cancels queued and running jobs (503) and terminates the worker. */
  close(): void;
}

async function readPlayground(): Promise<string | null> {
  try {
    return await Deno.readTextFile(new URL("./playground.html", import.meta.url));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Throws ApiError 404 when the default model is not in MODELS_DIR. */
export async function createServices(
  options: ServerOptions,
  spawn: WorkerFactory = spawnGpuWorker,
): Promise<Services> {
  const catalog = new ModelCatalog(options.modelsDir);
  const defaultModel = await catalog.get(options.defaultModel);
  const queue = new JobQueue(options.maxQueue);
  const metrics = new ServerMetrics(queue);
  const worker = new GpuWorker(spawn, [defaultModel.card], {
    onPoolStats: (stats) => metrics.pool(stats),
    onJobEnd: (outcome) => metrics.jobEnded(outcome),
    onRestart: (reason) => {
      console.error(reason);
      metrics.restart();
    },
  });
  const generator = new GenerationService(worker, queue, metrics, options.requestTimeoutS);
  const videos = new VideoJobs(generator, {
    capacity: options.maxVideoJobs,
    retentionSeconds: options.videoRetentionS,
    timeoutSeconds: options.videoTimeoutS,
    maxVideoPixels: options.maxVideoPixels,
    formats: await videoFormatSupport(),
  });
  return {
    deps: {
      catalog,
      generator,
      videos,
      worker,
      metrics,
      settings: {
        apiKey: options.apiKey,
        corsOrigin: options.corsOrigin,
        defaultModel: options.defaultModel,
      },
      playground: await readPlayground(),
    },
    worker,
    close: () => {
      generator.shutdown();
      videos.close();
      worker.close();
    },
  };
}
