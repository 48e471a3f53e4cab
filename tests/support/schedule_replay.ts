// A schedule's fused steps replayed on the CPU (src/ref/sampler_step.ts) from recorded model outputs, with the
// state the GPU keeps between steps: the x0s of earlier steps and the previous step's (corrected) sample.
import { samplerStep } from "../../src/ref/sampler_step.ts";
import type { SchedulerStep } from "../../src/pipeline/schedulers/schedule.ts";

export class ScheduleReplay {
  /** x0s of earlier steps, nearest first. */
  #history: Float32Array[] = [];
  #last: Float32Array | undefined;

  constructor(public sample: Float32Array, readonly batch: number) {}

  /** One deterministic step from model output m ([2B, ...] halves when guided); returns the new sample. */
  step(step: SchedulerStep, m: ArrayLike<number>, guidance?: number): Float32Array {
    if (step.next.noise !== 0) throw new Error(`a replayed step adds noise (next.noise ${step.next.noise})`);
    const { x, x0, sample } = samplerStep(this.sample, m, {
      ...step,
      guidance,
      history: this.#history,
      last: this.#last,
      batch: this.batch,
    });
    this.#history = [x0, ...this.#history];
    this.#last = sample;
    this.sample = x;
    return x;
  }
}
