// Storage buffers are recycled by exact byte size so that a steady-state denoising loop allocates nothing:
// after the first step every request is served from the free lists.
import type { Gpu } from "./device.ts";
import { BYTES_PER_ELEMENT, type DType, elementCount, formatShape, Tensor } from "./tensor.ts";

const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export interface PoolStats {
  /** createBuffer calls made by this pool since it was made. */
  allocations: number;
  /** Bytes of every buffer the pool owns, in use or free. */
  bytesHeld: number;
  buffersHeld: number;
  buffersInUse: number;
}

export class BufferPool {
  readonly #free = new Map<number, GPUBuffer[]>();
  readonly #owned = new Set<GPUBuffer>();
  #inUse = 0;
  #allocations = 0;

  constructor(private readonly gpu: Gpu) {}

  tensor(shape: readonly number[], dtype: DType = "f32"): Tensor {
    if (shape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new Error(`tensor shape ${formatShape(shape)}: every dimension must be a positive integer`);
    }
    const bytes = elementCount(shape) * BYTES_PER_ELEMENT[dtype];
    const limit = this.gpu.info.limits.maxStorageBufferBindingSize;
    if (bytes > limit) {
      throw new Error(
        `tensor ${formatShape(shape)} ${dtype} needs ${bytes} bytes, over the device's ` +
          `maxStorageBufferBindingSize ${limit}`,
      );
    }
    return new Tensor(this.#take(bytes), shape, dtype, this);
  }

  upload(data: Float32Array | Uint32Array | Int32Array, shape: readonly number[]): Tensor {
    if (data.length !== elementCount(shape)) {
      throw new Error(`upload: ${data.length} values do not fill shape ${formatShape(shape)}`);
    }
    const dtype: DType = data instanceof Float32Array ? "f32" : data instanceof Uint32Array ? "u32" : "i32";
    const t = this.tensor(shape, dtype);
    this.write(t, data);
    return t;
  }

  /** A tensor of stored bytes as they are (F16/BF16 weights, little endian). */
  uploadBytes(bytes: Uint8Array, shape: readonly number[], dtype: DType): Tensor {
    const t = this.tensor(shape, dtype);
    if (bytes.byteLength !== t.byteLength) {
      throw new Error(`upload: ${bytes.byteLength} bytes do not fill ${dtype} ${formatShape(shape)}`);
    }
    // writeBuffer needs a multiple of 4 bytes; the pool's buffers are padded to 16.
    const padded = bytes.byteLength % 4 === 0 ? bytes : new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    if (padded !== bytes) padded.set(bytes);
    this.gpu.device.queue.writeBuffer(
      t.buffer,
      0,
      padded.buffer as ArrayBuffer,
      padded.byteOffset,
      padded.byteLength,
    );
    return t;
  }

  /** Queue-ordered write: it lands after every submit made before it and before every submit after it. */
  write(tensor: Tensor, data: Float32Array | Uint32Array | Int32Array, elementOffset = 0): void {
    if (elementOffset + data.length > tensor.size) {
      throw new Error(
        `write of ${data.length} values at ${elementOffset} overruns tensor ${formatShape(tensor.shape)}`,
      );
    }
    this.gpu.device.queue.writeBuffer(
      tensor.buffer,
      elementOffset * 4,
      data.buffer as ArrayBuffer,
      data.byteOffset,
      data.byteLength,
    );
  }

  /** Called by Tensor.release. */
  recycle(buffer: GPUBuffer): void {
    if (!this.#owned.has(buffer)) throw new Error("buffer does not belong to this pool");
    this.#inUse--;
    const list = this.#free.get(buffer.size) ?? [];
    list.push(buffer);
    this.#free.set(buffer.size, list);
  }

  stats(): PoolStats {
    let bytesHeld = 0;
    for (const b of this.#owned) bytesHeld += b.size;
    return {
      allocations: this.#allocations,
      bytesHeld,
      buffersHeld: this.#owned.size,
      buffersInUse: this.#inUse,
    };
  }

  /** Frees the idle buffers; GPU memory is invisible to the garbage collector, so this must be explicit. */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        this.#owned.delete(b);
        b.destroy();
      }
    }
    this.#free.clear();
  }

  destroy(): void {
    this.trim();
    for (const b of this.#owned) b.destroy();
    this.#owned.clear();
    this.#inUse = 0;
  }

  #take(bytes: number): GPUBuffer {
    // Storage bindings must be a multiple of 4 bytes; 16 keeps vec4 loads of the tail in bounds.
    const size = Math.ceil(bytes / 16) * 16;
    this.#inUse++;
    const reused = this.#free.get(size)?.pop();
    if (reused) return reused;
    this.#allocations++;
    const buffer = this.gpu.device.createBuffer({ size, usage: STORAGE_USAGE });
    this.#owned.add(buffer);
    return buffer;
  }
}
