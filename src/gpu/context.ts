// What every op needs: the device, the buffer pool and the pipeline cache, created and destroyed together.
import { Gpu } from "./device.ts";
import { KernelCache } from "./kernel.ts";
import { BufferPool } from "./pool.ts";

export class GpuContext {
  readonly pool: BufferPool;
  readonly kernels: KernelCache;

  constructor(readonly gpu: Gpu) {
    this.pool = new BufferPool(gpu);
    this.kernels = new KernelCache(gpu);
  }

  static async create(): Promise<GpuContext> {
    return new GpuContext(await Gpu.acquire());
  }

  destroy(): void {
    this.pool.destroy();
    this.gpu.destroy();
  }
}
