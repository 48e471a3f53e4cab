// A GPU worker for the video routes that needs no GPU and no weights: it speaks the real worker protocol
// (src/server/worker_protocol.ts) behind the real GpuWorker client, queue and job store, "denoises" each job
// step by step and writes frames that move (tests/support/video.ts) through the worker's own output code
// (src/server/job_output.ts). A job with HOLD_SEED waits before each step until the test lets it take one
// (FakeVideoWorkers.advance); FAIL_SEED fails it after its first step. The video model itself is a real Wan
// directory (the tiny fixture with its UMT5 encoder and tokenizer added), so requests resolve against a real
// WanPipeline card.
import type { WorkerFactory } from "../../../src/server/gpu_worker_client.ts";
import { wanTextPipeline } from "../../support/wan_text_pipeline.ts";

export const HOLD_SEED = 7_070_707;
export const FAIL_SEED = 7_070_708;
export const FAIL_MESSAGE = "simulated failure after the first step";

/** What the test sends the fake worker besides the protocol's own messages. */
export type FakeControl = { type: "advance"; steps: number };

export class FakeVideoWorkers {
  #worker: Worker | null = null;

  readonly spawn: WorkerFactory = () => {
    this.#worker = new Worker(new URL("./fake_video_gpu_worker.ts", import.meta.url).href, {
      type: "module",
    });
    return this.#worker;
  };

  /** Lets a HOLD_SEED job take `steps` more steps. */
  advance(steps = 1): void {
    this.#worker?.postMessage({ type: "advance", steps } satisfies FakeControl);
  }
}

/** MODELS_DIR with "wan-tiny": tests/fixtures/wan/pipeline plus its UMT5 text encoder and tokenizer. */
export async function wanModelsDir(): Promise<string> {
  const modelsDir = await Deno.makeTempDir({ prefix: "ditserve-videos-" });
  await wanTextPipeline(modelsDir, "wan-tiny");
  return modelsDir;
}
