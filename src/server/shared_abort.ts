// Aborting the job a GPU worker is running. The worker's denoising loop only yields to its event loop when it
// waits on the GPU, which it does not do between steps unless progress was asked for, so an abort *message*
// would be read only after the run. The HTTP thread writes the job's id to shared memory instead, and the
// signal generate() checks between steps reads it there.

const ABORT_REASON = "job aborted by the server (client gone, timeout or shutdown)";

export class SharedAbort {
  readonly #cell: Int32Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    this.#cell = new Int32Array(buffer);
  }

  /** Marks job `id` aborted (ids are positive and never reused by one worker). */
  abort(id: number): void {
    Atomics.store(this.#cell, 0, id);
  }

  /**
   * A signal for job `id` that turns aborted as soon as abort(id) is called on any thread. It reads the
   * shared cell when asked (aborted, reason, throwIfAborted); its events fire only once it has been asked.
   */
  signal(id: number): AbortSignal {
    const controller = new AbortController();
    const real = controller.signal;
    const sync = () => {
      if (!real.aborted && Atomics.load(this.#cell, 0) === id) {
        controller.abort(new DOMException(ABORT_REASON, "AbortError"));
      }
    };
    return Object.create(real, {
      aborted: { get: () => (sync(), real.aborted) },
      reason: { get: () => (sync(), real.reason) },
      throwIfAborted: { value: () => (sync(), real.throwIfAborted()) },
    });
  }
}
