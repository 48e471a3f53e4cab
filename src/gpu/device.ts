// The one place that talks to navigator.gpu: adapter choice, granted limits and features, device loss.

export class NoAdapterError extends Error {
  constructor() {
    super(
      "no WebGPU adapter: install Mesa (apt-get install libgl1-mesa-dri, or mesa-vulkan-drivers with " +
        "DENO_WEBGPU_BACKEND=vulkan) or a GPU driver",
    );
    this.name = "NoAdapterError";
  }
}

/** Limits the kernels size themselves against; requested up to what the adapter offers. */
const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

/** Features used when offered; kernels must work without them. */
const OPTIONAL_FEATURES: GPUFeatureName[] = ["shader-f16", "subgroups" as GPUFeatureName, "timestamp-query"];

export type GpuLimits = Record<(typeof WANTED_LIMITS)[number], number>;

export interface GpuInfo {
  adapter: string;
  backend: string;
  features: string[];
  limits: GpuLimits;
}

export class Gpu {
  healthy = true;
  lostReason: string | null = null;
  readonly info: GpuInfo;

  private constructor(readonly device: GPUDevice, adapter: GPUAdapter, readonly features: Set<string>) {
    const limits = {} as GpuLimits;
    for (const name of WANTED_LIMITS) limits[name] = device.limits[name];
    this.info = {
      adapter: adapter.info.description || adapter.info.vendor || "unknown adapter",
      backend: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default",
      features: [...features].sort(),
      limits,
    };
    device.lost.then((lost) => {
      this.healthy = false;
      this.lostReason = `${lost.reason}: ${lost.message}`;
      if (lost.reason !== "destroyed") console.error(`GPU device lost (${this.lostReason})`);
    });
  }

  /** Throws NoAdapterError when nothing answers; callers at the CLI edge turn it into exit code 1. */
  static async acquire(): Promise<Gpu> {
    const adapter = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new NoAdapterError();
    const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
    const requiredLimits: Record<string, number> = {};
    for (const name of WANTED_LIMITS) requiredLimits[name] = adapter.limits[name];
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    return new Gpu(device, adapter, new Set(requiredFeatures));
  }

  get hasF16(): boolean {
    return this.features.has("shader-f16");
  }

  /** Surfaces WebGPU validation errors as thrown errors instead of console warnings. */
  async checked<T>(what: string, make: () => T): Promise<T> {
    this.device.pushErrorScope("validation");
    const result = make();
    const error = await this.device.popErrorScope();
    if (error) throw new Error(`${what}: ${error.message}`);
    return result;
  }

  destroy(): void {
    this.device.destroy();
  }
}
