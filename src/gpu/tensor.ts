// A GPU buffer that knows its shape and element type. Tensors come from a BufferPool and go back to it.
import type { BufferPool } from "./pool.ts";

/** f16 and bf16 hold stored weights only (two per 32-bit word); every activation is f32. */
export type DType = "f32" | "u32" | "i32" | "f16" | "bf16";

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, u32: 4, i32: 4, f16: 2, bf16: 2 };

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

export class Tensor {
  #released = false;

  constructor(
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    private readonly pool: BufferPool,
  ) {}

  get size(): number {
    return elementCount(this.shape);
  }

  get byteLength(): number {
    return this.size * BYTES_PER_ELEMENT[this.dtype];
  }

  get released(): boolean {
    return this.#released;
  }

  /** Same storage seen with another shape of equal element count (no copy). */
  view(shape: readonly number[]): Tensor {
    if (elementCount(shape) !== this.size) {
      throw new Error(`cannot view ${formatShape(this.shape)} as ${formatShape(shape)}`);
    }
    return new Tensor(this.buffer, shape, this.dtype, this.pool);
  }

  /** Hands the buffer back to its pool for reuse; the tensor must not be used afterwards. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.pool.recycle(this.buffer);
  }
}
