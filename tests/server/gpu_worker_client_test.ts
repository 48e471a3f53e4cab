// The GPU worker handle on its own: a worker that never takes an abort is replaced after the grace period,
// and a worker that cannot start reports why instead of restarting in a loop.
import assert from "node:assert/strict";
import { resolveRequest } from "../../src/pipeline/request.ts";
import {
  GpuWorker,
  spawnGpuWorker,
  WorkerCrashedError,
  WorkerUnavailableError,
} from "../../src/server/gpu_worker_client.ts";
import { ModelCatalog } from "../../src/server/model_catalog.ts";
import type { GenerationJob } from "../../src/server/worker_protocol.ts";
import { HANG_SEED, spawnCrashingWorker } from "./support/crash.ts";
import { serverTest } from "./support/http.ts";

const model = await new ModelCatalog("weights").get("mnist-dit");

const job = (seed: number): GenerationJob => ({
  card: model.card,
  request: resolveRequest(model.card, { labels: [1], steps: 2, seed, shift: 1, eta: 0, cache: "none" }),
  progress: false,
  layout: "grid",
  previews: [],
});

serverTest(
  "a worker that does not stop after an abort is replaced; the next job runs on a new one",
  async () => {
    const restarts: string[] = [];
    const worker = new GpuWorker(spawnCrashingWorker, [model.card], {
      abortGraceMs: 300,
      onRestart: (reason) => restarts.push(reason),
    });
    try {
      await worker.ready();
      const cancel = new AbortController();
      const hung = worker.run(job(HANG_SEED), { signal: cancel.signal });
      setTimeout(() => cancel.abort(), 100);
      await assert.rejects(hung, (e: unknown) => {
        assert.ok(e instanceof WorkerCrashedError);
        assert.match(e.message, /did not stop within 0\.3 s of an abort/);
        return true;
      });
      const output = await worker.run(job(1), { signal: new AbortController().signal });
      assert.equal(output.pngs.length, 1);
      assert.equal(restarts.length, 1);
      assert.equal(worker.status().state, "ready");
    } finally {
      worker.close();
    }
  },
);

serverTest("a worker that cannot load its model fails once, saying why, and is not restarted", async () => {
  const restarts: string[] = [];
  const worker = new GpuWorker(spawnGpuWorker, [{ ...model.card, dir: "/nonexistent/model" }], {
    onRestart: (r) => restarts.push(r),
  });
  try {
    await assert.rejects(worker.ready(), (e: unknown) => {
      assert.ok(e instanceof WorkerUnavailableError);
      assert.match(e.message, /\/nonexistent\/model/);
      return true;
    });
    assert.equal(worker.status().state, "failed");
    await assert.rejects(
      worker.run(job(1), { signal: new AbortController().signal }),
      WorkerUnavailableError,
    );
    assert.deepEqual(restarts, []);
  } finally {
    worker.close();
  }
});
