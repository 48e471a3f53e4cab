// The shared-memory abort between the HTTP thread and the GPU worker, on one thread: a job's signal turns
// aborted only for its own id, and reads like an ordinary aborted signal.
import assert from "node:assert/strict";
import { SharedAbort } from "../../src/server/shared_abort.ts";

Deno.test("abort(id) aborts the signal of that job only, with an AbortError", () => {
  const writer = new SharedAbort();
  const reader = new SharedAbort(writer.buffer);
  const [five, six] = [reader.signal(5), reader.signal(6)];
  assert.equal(five.aborted, false);
  five.throwIfAborted();
  writer.abort(5);
  assert.equal(five.aborted, true);
  assert.throws(
    () => five.throwIfAborted(),
    (e: unknown) => e instanceof DOMException && e.name === "AbortError",
  );
  assert.equal((five.reason as DOMException).name, "AbortError");
  assert.equal(six.aborted, false);
  six.throwIfAborted();
});
