// Worker entry for FakeVideoWorkers (fake_video.ts): see there.
import type { CacheStats } from "../../../src/cache/strategy.ts";
import { encodeOutput, transferables } from "../../../src/server/job_output.ts";
import { SharedAbort } from "../../../src/server/shared_abort.ts";
import type { FromWorker, GenerationJob, ToWorker } from "../../../src/server/worker_protocol.ts";
import { movingFrames } from "../../support/video.ts";
import { FAIL_MESSAGE, FAIL_SEED, type FakeControl, HOLD_SEED } from "./fake_video.ts";

const scope = self as unknown as {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker | FakeControl>) => void) | null;
};

const POOL = { allocations: 0, bytesHeld: 0, buffersHeld: 0, buffersInUse: 0 };
/** A step takes a few milliseconds, so that steps are separate events; a held job checks this often. */
const STEP_MS = 5;

/** Steps the test has let held jobs take. */
let allowed = 0;
let aborts = new SharedAbort();

const sleep = () => new Promise((resolve) => setTimeout(resolve, STEP_MS));

/** Waits for the next step (held: until the test allows one); false when the job was aborted meanwhile. */
async function nextStep(held: boolean, signal: AbortSignal): Promise<boolean> {
  await sleep();
  while (held && allowed === 0 && !signal.aborted) await sleep();
  if (signal.aborted) return false;
  if (held) allowed--;
  return true;
}

async function run(id: number, job: GenerationJob): Promise<void> {
  const { steps, seed, size } = job.request;
  const cache: CacheStats = {
    strategy: "none",
    steps: 0,
    cachedSteps: [],
    computedSteps: [],
    diffs: [],
    gates: [],
    blocksExecuted: 0,
    blocksTotal: 0,
    memoryBytes: 0,
    readbacks: 0,
    notes: [],
  };
  const signal = aborts.signal(id);
  for (let step = 0; step < steps; step++) {
    if (!(await nextStep(seed === HOLD_SEED, signal))) {
      scope.postMessage({ type: "failed", id, kind: "aborted", message: "aborted", pool: POOL });
      return;
    }
    cache.steps++;
    cache.computedSteps.push(step);
    const progress = { step, steps, cached: false, diff: null, blocks_run: 1 };
    if (job.progress) scope.postMessage({ type: "step", id, progress });
    if (seed === FAIL_SEED) {
      scope.postMessage({ type: "failed", id, kind: "internal", message: FAIL_MESSAGE, pool: POOL });
      return;
    }
  }
  const frames = job.request.video?.frames ?? 1;
  const decoded = {
    images: movingFrames(frames, size.width, size.height),
    shape: [frames, 3, size.height, size.width] as [number, number, number, number],
  };
  const output = { ...(await encodeOutput(decoded, job)), seconds: 0.01 * steps, cache, notes: [] };
  scope.postMessage({ type: "done", id, output, pool: POOL }, transferables(output));
}

scope.onmessage = (event) => {
  const message = event.data;
  switch (message.type) {
    case "init":
      aborts = new SharedAbort(message.aborts);
      scope.postMessage({
        type: "ready",
        adapter: "fake video worker",
        backend: "none",
        decisionCosts: { emptyDispatchMs: 0, indirectExtraMs: 0, readbackMs: 0 },
        pool: POOL,
      });
      break;
    case "generate":
      run(message.id, message.job);
      break;
    case "advance":
      allowed += message.steps;
      break;
    case "close":
      self.close();
      break;
  }
};
