// Worker entry for spawnCrashingWorker (crash.ts): see there.
import "../../../src/server/gpu_worker.ts";
import type { FromWorker, ToWorker } from "../../../src/server/worker_protocol.ts";
import { CRASH_SEED, HANG_SEED, LOST_SEED } from "./crash.ts";

self.addEventListener("message", (event) => {
  const message = (event as MessageEvent<ToWorker>).data;
  if (message.type !== "generate") return;
  if (message.job.request.seed === CRASH_SEED) throw new Error("simulated GPU worker crash");
  if (message.job.request.seed === HANG_SEED) {
    while (true) {
      // Spins like a wedged GPU wait: no step is ever reached, so an abort is never taken.
    }
  }
  if (message.job.request.seed === LOST_SEED) {
    self.postMessage({ type: "lost", reason: "simulated device loss" } satisfies FromWorker);
  }
});
