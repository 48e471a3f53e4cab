// Activation buffers of graphs that are built once and replayed: a tensor handed back with give() is lent again
// to a later take() of the same graph (or of another graph that never runs at the same time), because the
// commands of a graph run in order. The arena keeps every buffer it ever took from the pool until release(), so
// nothing outside it can be given a buffer a kept graph still writes; a graph then holds the largest set of
// activations alive at once instead of all of them.
import type { BufferPool } from "./pool.ts";
import { elementCount, Tensor } from "./tensor.ts";

export class ActivationArena {
  /** Buffers owned (pool tensors) and those not lent now. */
  readonly #slabs: Tensor[] = [];
  readonly #free = new Set<Tensor>();
  readonly #lent = new Map<GPUBuffer, Tensor>();

  constructor(private readonly pool: BufferPool) {}

  /**
   * An f32 tensor of `shape` on the smallest free buffer that holds it, or on a new one. Never release() it:
   * give() it back once the last command that reads it is recorded.
   */
  take(shape: readonly number[]): Tensor {
    const size = elementCount(shape);
    let slab: Tensor | undefined;
    for (const s of this.#free) if (s.size >= size && (!slab || s.size < slab.size)) slab = s;
    if (!slab) {
      slab = this.pool.tensor([size]);
      this.#slabs.push(slab);
    } else this.#free.delete(slab);
    this.#lent.set(slab.buffer, slab);
    return slab.size === size ? slab.view(shape) : new Tensor(slab.buffer, shape, "f32", this.pool);
  }

  /** `tensor`'s buffer may be lent again: no command recorded after this call may read what it holds. */
  give(tensor: Tensor): void {
    const slab = this.#lent.get(tensor.buffer);
    if (!slab) throw new Error("ActivationArena.give: the tensor is not lent by this arena (or given twice)");
    this.#lent.delete(tensor.buffer);
    this.#free.add(slab);
  }

  /** Every buffer may be lent again: a graph is complete, and the next one never runs at the same time. */
  giveAll(): void {
    for (const slab of this.#lent.values()) this.#free.add(slab);
    this.#lent.clear();
  }

  /** Bytes of the buffers held. */
  get bytes(): number {
    return this.#slabs.reduce((n, s) => n + s.byteLength, 0);
  }

  release(): void {
    for (const s of this.#slabs.splice(0)) s.release();
    this.#free.clear();
    this.#lent.clear();
  }
}
