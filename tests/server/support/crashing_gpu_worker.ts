// Worker entry for spawnCrashingWorker (crash.ts): see there.
import "../../../src/server/gpu_worker.ts";
import type { ToWorker } from "../../../src/server/worker_protocol.ts";
import { CRASH_SEED } from "./crash.ts";

self.addEventListener("message", (event) => {
  const message = (event as MessageEvent<ToWorker>).data;
  if (message.type === "generate" && message.job.sampling.seed === CRASH_SEED) {
    throw new Error("simulated GPU worker crash");
  }
});
