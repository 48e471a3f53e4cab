// The bounded FIFO on its own (no GPU): order, refusal when full, and cancellation freeing a slot.
import assert from "node:assert/strict";
import { JobQueue, QueueFullError } from "../../src/server/job_queue.ts";

/** A task that runs until release() is called, recording when it started. */
function gate(log: string[], name: string) {
  const done = Promise.withResolvers<string>();
  return {
    task: (signal: AbortSignal) => {
      log.push(`start ${name}`);
      signal.addEventListener("abort", () => done.reject(signal.reason), { once: true });
      return done.promise;
    },
    release: () => done.resolve(name),
  };
}

Deno.test("jobs run one at a time in arrival order", async () => {
  const log: string[] = [];
  const queue = new JobQueue(4);
  const [a, b, c] = ["a", "b", "c"].map((n) => gate(log, n));
  const results = [a, b, c].map((g) => queue.enqueue(g.task, new AbortController().signal));
  assert.deepEqual(log, ["start a"]);
  assert.equal(queue.depth, 2);
  c.release();
  b.release();
  a.release();
  assert.deepEqual(await Promise.all(results), ["a", "b", "c"]);
  assert.deepEqual(log, ["start a", "start b", "start c"]);
  assert.equal(queue.depth, 0);
  assert.equal(queue.busy, false);
});

Deno.test("a full queue refuses at once with a Retry-After estimate; the running job is not counted", async () => {
  const log: string[] = [];
  const queue = new JobQueue(1);
  const [a, b] = [gate(log, "a"), gate(log, "b")];
  const running = queue.enqueue(a.task, new AbortController().signal);
  const waiting = queue.enqueue(b.task, new AbortController().signal);
  assert.throws(
    () => queue.enqueue(gate(log, "c").task, new AbortController().signal),
    (e: unknown) => e instanceof QueueFullError && e.retryAfterSeconds >= 1,
  );
  a.release();
  b.release();
  assert.deepEqual(await Promise.all([running, waiting]), ["a", "b"]);
  assert.deepEqual(log, ["start a", "start b"]);
});

Deno.test("a waiting job whose signal aborts leaves the queue and frees its slot", async () => {
  const log: string[] = [];
  const queue = new JobQueue(1);
  const [a, b, c] = ["a", "b", "c"].map((n) => gate(log, n));
  const running = queue.enqueue(a.task, new AbortController().signal);
  const cancel = new AbortController();
  const cancelled = queue.enqueue(b.task, cancel.signal);
  cancel.abort(new Error("client went away"));
  await assert.rejects(cancelled, /client went away/);
  assert.equal(queue.depth, 0);
  const next = queue.enqueue(c.task, new AbortController().signal);
  a.release();
  c.release();
  assert.deepEqual(await Promise.all([running, next]), ["a", "c"]);
  assert.deepEqual(log, ["start a", "start c"], "the cancelled job never started");
});

Deno.test("aborting the running job lets the next one start once the task settles", async () => {
  const log: string[] = [];
  const queue = new JobQueue(2);
  const [a, b] = [gate(log, "a"), gate(log, "b")];
  const cancel = new AbortController();
  const running = queue.enqueue(a.task, cancel.signal);
  const next = queue.enqueue(b.task, new AbortController().signal);
  cancel.abort(new Error("stop"));
  await assert.rejects(running, /stop/);
  b.release();
  assert.equal(await next, "b");
  assert.deepEqual(log, ["start a", "start b"]);
});

Deno.test("an already aborted signal is refused without queueing", () => {
  const queue = new JobQueue(1);
  const cancel = new AbortController();
  cancel.abort(new Error("gone"));
  assert.throws(() => queue.enqueue(() => Promise.resolve(1), cancel.signal), /gone/);
  assert.equal(queue.depth, 0);
});
