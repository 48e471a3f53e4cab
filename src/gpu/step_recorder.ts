// One command encoder per denoising step. A cache strategy that must see a number mid-step calls read(),
// which submits what is recorded so far and reads the tensor back (counted by readback()).
import type { Gpu } from "./device.ts";
import { type Command, encodeCommands } from "./kernel.ts";
import { readFloats } from "./readback.ts";
import type { Tensor } from "./tensor.ts";

export class StepRecorder {
  #encoder: GPUCommandEncoder | null = null;
  #submits = 0;

  constructor(private readonly gpu: Gpu) {}

  get submits(): number {
    return this.#submits;
  }

  encode(commands: readonly Command[]): void {
    this.#encoder ??= this.gpu.device.createCommandEncoder();
    encodeCommands(this.#encoder, commands);
  }

  /** Submits everything recorded; an encoder is never left unsubmitted (deno#29140). */
  submit(): void {
    if (!this.#encoder) return;
    this.gpu.device.queue.submit([this.#encoder.finish()]);
    this.#encoder = null;
    this.#submits++;
  }

  async read(tensor: Tensor): Promise<Float32Array> {
    this.submit();
    return await readFloats(this.gpu, tensor);
  }
}
