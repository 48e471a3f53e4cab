// A GPU worker that can be made to fail: the real worker plus a listener that throws (uncaught) when a job asks
// for CRASH_SEED, reports its device lost for LOST_SEED, and hangs (never reaching a step) for HANG_SEED.
// Injected through startServer's spawnWorker; the product has no crash route.
import type { WorkerFactory } from "../../../src/server/gpu_worker_client.ts";

export const CRASH_SEED = 4_040_404;
export const LOST_SEED = 4_040_405;
export const HANG_SEED = 4_040_406;

export const spawnCrashingWorker: WorkerFactory = () =>
  new Worker(new URL("./crashing_gpu_worker.ts", import.meta.url).href, { type: "module" });
