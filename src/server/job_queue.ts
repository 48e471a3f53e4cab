// FIFO of GPU jobs, one running at a time. Bounded: a job that would wait behind `maxWaiting` others is
// refused at once (429) instead of queueing without end. A waiting job whose signal aborts leaves the queue;
// a running job is the task's to stop (it gets the same signal), and the next starts when it settles.

export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number, waiting: number) {
    super(`queue is full (${waiting} jobs waiting); retry after ${retryAfterSeconds} s`);
  }
}

interface Waiting {
  start(): Promise<void>;
  signal: AbortSignal;
  leave(): void;
}

/** Weight of the newest job in the running mean of job seconds that Retry-After is estimated from. */
const MEAN_WEIGHT = 0.2;

export class JobQueue {
  readonly #waiting: Waiting[] = [];
  #running = false;
  #meanSeconds = 1;

  constructor(readonly maxWaiting: number) {}

  /** Jobs waiting (not counting the running one). */
  get depth(): number {
    return this.#waiting.length;
  }

  get busy(): boolean {
    return this.#running;
  }

  /** Throws QueueFullError (synchronously) when full; the promise rejects with signal.reason on abort. */
  enqueue<R>(task: (signal: AbortSignal) => Promise<R>, signal: AbortSignal): Promise<R> {
    signal.throwIfAborted();
    if (this.#waiting.length >= this.maxWaiting && this.#running) {
      const seconds = Math.max(1, Math.ceil(this.#meanSeconds * (this.#waiting.length + 1)));
      throw new QueueFullError(seconds, this.#waiting.length);
    }
    return new Promise<R>((resolve, reject) => {
      const entry: Waiting = {
        start: () => task(signal).then(resolve, reject),
        signal,
        leave: () => {
          this.#waiting.splice(this.#waiting.indexOf(entry), 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener("abort", entry.leave, { once: true });
      this.#waiting.push(entry);
      this.#next();
    });
  }

  #next(): void {
    if (this.#running) return;
    const entry = this.#waiting.shift();
    if (!entry) return;
    entry.signal.removeEventListener("abort", entry.leave);
    this.#running = true;
    const started = performance.now();
    entry.start().finally(() => {
      const seconds = (performance.now() - started) / 1000;
      this.#meanSeconds += MEAN_WEIGHT * (seconds - this.#meanSeconds);
      this.#running = false;
      this.#next();
    });
  }
}
