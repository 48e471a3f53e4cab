// Tiny host API in the spirit of gpu.cpp: a kernel is a compiled pipeline with an explicit bind-group
// layout (never layout "auto", whose bindings silently vanish when unused), a Dispatch is that kernel bound
// to buffers with its sizes in a uniform, built once and encoded any number of times.
import type { Gpu } from "./device.ts";
import { formatShape, type Tensor } from "./tensor.ts";

export type BindingKind = "read" | "read_write" | "uniform";

export interface KernelSpec {
  /** Shader file stem under shaders/, or a name for generated `source`. */
  name: string;
  /** One entry per @binding(i) of @group(0), in order. */
  bindings: readonly BindingKind[];
  /** Values for `override` declarations; part of the cache key. */
  constants?: Record<string, number>;
  entry?: string;
  /** Generated WGSL text, used instead of shaders/<name>.wgsl when given. */
  source?: string;
}

export interface Kernel {
  readonly spec: KernelSpec;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

/** An error raised before anything is dispatched; names the kernel so logs point at the right op. */
export class KernelError extends Error {
  constructor(kernel: string, message: string) {
    super(`${kernel}: ${message}`);
    this.name = "KernelError";
  }
}

const shaderDir = new URL("../../shaders/", import.meta.url);
const sourceCache = new Map<string, string>();

/** The text of shaders/<name>.wgsl as it is (a prelude, or a kernel before common.wgsl is added). */
export function shaderFile(name: string): string {
  let text = sourceCache.get(name);
  if (text === undefined) {
    text = Deno.readTextFileSync(new URL(`${name}.wgsl`, shaderDir));
    sourceCache.set(name, text);
  }
  return text;
}

/** WGSL has no includes: every shader file is compiled with common.wgsl in front of it. */
export function shaderSource(name: string): string {
  return `${shaderFile("common")}\n${shaderFile(name)}`;
}

const BINDING_TYPES: Record<BindingKind, GPUBufferBindingType> = {
  read: "read-only-storage",
  read_write: "storage",
  uniform: "uniform",
};

/** Pipelines compiled once per (kernel, constants); createComputePipeline is synchronous in Deno anyway. */
export class KernelCache {
  readonly #kernels = new Map<string, Kernel>();
  readonly #pendingErrors: Promise<GPUError | null>[] = [];

  constructor(private readonly gpu: Gpu) {}

  get size(): number {
    return this.#kernels.size;
  }

  get(spec: KernelSpec): Kernel {
    const key = kernelKey(spec);
    let kernel = this.#kernels.get(key);
    if (!kernel) {
      kernel = this.#compile(spec);
      this.#kernels.set(key, kernel);
    }
    return kernel;
  }

  /** Throws the first shader or pipeline validation error of the kernels compiled so far. */
  async ready(): Promise<void> {
    const errors = await Promise.all(this.#pendingErrors.splice(0));
    const first = errors.find((e) => e !== null);
    if (first) throw new Error(`kernel compilation failed: ${first.message}`);
  }

  #compile(spec: KernelSpec): Kernel {
    const device = this.gpu.device;
    device.pushErrorScope("validation");
    const module = device.createShaderModule({
      label: spec.name,
      code: spec.source ?? shaderSource(spec.name),
    });
    const layout = device.createBindGroupLayout({
      label: spec.name,
      entries: spec.bindings.map((kind, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: BINDING_TYPES[kind] },
      })),
    });
    const pipeline = device.createComputePipeline({
      label: spec.name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: spec.entry ?? "main", constants: spec.constants },
    });
    this.#pendingErrors.push(device.popErrorScope());
    return { spec, pipeline, layout };
  }
}

function kernelKey(spec: KernelSpec): string {
  const constants = Object.entries(spec.constants ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return `${spec.name}|${spec.entry ?? "main"}|${JSON.stringify(constants)}|${spec.source ?? ""}`;
}

export type UniformField = ["u32" | "i32" | "f32", number];

/** Packs a uniform struct of 4-byte scalars in declaration order, padded to 16 bytes. */
export function packUniform(fields: readonly UniformField[]): ArrayBuffer {
  const data = new ArrayBuffer(Math.max(16, Math.ceil(fields.length / 4) * 16));
  const view = new DataView(data);
  fields.forEach(([type, value], i) => {
    if (type === "f32") view.setFloat32(i * 4, value, true);
    else if (type === "i32") view.setInt32(i * 4, value, true);
    else view.setUint32(i * 4, value, true);
  });
  return data;
}

export interface Dispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
  /** Owned uniform buffer, destroyed by disposeDispatches. */
  readonly uniform?: GPUBuffer;
  /** Workgroup counts read from this buffer when the dispatch runs (a GPU-side decision may zero them). */
  readonly indirect?: { buffer: GPUBuffer; offset: number };
}

export type Resource = Tensor | GPUBuffer;

/**
 * Binds `resources` (storage bindings in spec order) plus an optional trailing uniform. Checks every limit
 * first so that a bad size is a thrown KernelError, not a device-level validation failure.
 */
export function bindKernel(
  gpu: Gpu,
  kernel: Kernel,
  resources: readonly Resource[],
  workgroups: readonly [number, number, number],
  uniform?: ArrayBuffer,
): Dispatch {
  const name = kernel.spec.name;
  const { maxComputeWorkgroupsPerDimension, maxStorageBufferBindingSize } = gpu.info.limits;
  for (const count of workgroups) {
    if (!Number.isInteger(count) || count < 1 || count > maxComputeWorkgroupsPerDimension) {
      throw new KernelError(
        name,
        `dispatch of [${
          workgroups.join(", ")
        }] workgroups is outside 1..${maxComputeWorkgroupsPerDimension} ` +
          `per dimension (maxComputeWorkgroupsPerDimension)`,
      );
    }
  }
  const expected = kernel.spec.bindings.length - (uniform ? 1 : 0);
  if (resources.length !== expected) {
    throw new KernelError(name, `expects ${expected} buffers, got ${resources.length}`);
  }
  for (const r of resources) {
    const size = "buffer" in r ? r.buffer.size : r.size;
    if (size > maxStorageBufferBindingSize) {
      const what = "shape" in r ? `tensor ${formatShape(r.shape)}` : "buffer";
      throw new KernelError(
        name,
        `${what} of ${size} bytes is over maxStorageBufferBindingSize ${maxStorageBufferBindingSize}`,
      );
    }
  }
  const buffers = resources.map((r) => ("buffer" in r ? r.buffer : r));
  let uniformBuffer: GPUBuffer | undefined;
  if (uniform) {
    uniformBuffer = gpu.device.createBuffer({
      label: `${name}.uniform`,
      size: uniform.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    gpu.device.queue.writeBuffer(uniformBuffer, 0, uniform);
    buffers.push(uniformBuffer);
  }
  const bindGroup = gpu.device.createBindGroup({
    label: name,
    layout: kernel.layout,
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  return { label: name, pipeline: kernel.pipeline, bindGroup, workgroups, uniform: uniformBuffer };
}

export function encodeDispatches(pass: GPUComputePassEncoder, dispatches: readonly Dispatch[]): void {
  for (const d of dispatches) {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    if (d.indirect) pass.dispatchWorkgroupsIndirect(d.indirect.buffer, d.indirect.offset);
    else pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
  }
}

/** A buffer-to-buffer copy, for the few places a kernel would only move bytes (snapshots, broadcasts). */
export interface CopyCommand {
  readonly label: string;
  readonly copy: { src: Resource; srcOffset: number; dst: Resource; dstOffset: number; bytes: number };
}

/** What a step is made of; built once per request, encoded every step. */
export type Command = Dispatch | CopyCommand;

export function isDispatch(c: Command): c is Dispatch {
  return !("copy" in c);
}

const bufferOf = (r: Resource): GPUBuffer => ("buffer" in r ? r.buffer : r);
const bytesOf = (r: Resource): number => ("buffer" in r ? r.byteLength : r.size);
const describe = (r: Resource): string => ("buffer" in r ? formatShape(r.shape) : `buffer ${r.label}`);

/** Copies between tensors, or raw buffers such as a dispatch's uniform (GPU-computed coefficients). */
export function copyCommand(
  label: string,
  src: Resource,
  dst: Resource,
  options: { srcOffset?: number; dstOffset?: number; bytes?: number } = {},
): CopyCommand {
  const { srcOffset = 0, dstOffset = 0, bytes = bytesOf(src) - srcOffset } = options;
  if (bytes % 4 !== 0 || srcOffset % 4 !== 0 || dstOffset % 4 !== 0) {
    throw new KernelError(
      label,
      `copy offsets and size (${srcOffset}, ${dstOffset}, ${bytes}) must be multiples of 4 bytes`,
    );
  }
  if (srcOffset + bytes > bytesOf(src) || dstOffset + bytes > bytesOf(dst)) {
    throw new KernelError(
      label,
      `copy of ${bytes} bytes from ${describe(src)} at ${srcOffset} to ${describe(dst)} at ${dstOffset} ` +
        "runs past a tensor",
    );
  }
  return { label, copy: { src, srcOffset, dst, dstOffset, bytes } };
}

/** Runs of dispatches share one compute pass; a copy closes the pass (copies live outside passes). */
export function encodeCommands(encoder: GPUCommandEncoder, commands: readonly Command[]): void {
  let pass: GPUComputePassEncoder | null = null;
  for (const c of commands) {
    if ("copy" in c) {
      pass?.end();
      pass = null;
      const { src, srcOffset, dst, dstOffset, bytes } = c.copy;
      encoder.copyBufferToBuffer(bufferOf(src), srcOffset, bufferOf(dst), dstOffset, bytes);
    } else {
      pass ??= encoder.beginComputePass();
      encodeDispatches(pass, [c]);
    }
  }
  pass?.end();
}

/** One encoder, one submit: the cheapest way to run a list of commands. */
export function submitDispatches(gpu: Gpu, commands: readonly Command[]): void {
  const encoder = gpu.device.createCommandEncoder();
  encodeCommands(encoder, commands);
  gpu.device.queue.submit([encoder.finish()]);
}

export function disposeDispatches(commands: readonly Command[]): void {
  for (const c of commands) if ("uniform" in c) c.uniform?.destroy();
}

/** Workgroups needed to cover `n` items with `perGroup` items each. */
export function groups(n: number, perGroup: number): number {
  return Math.ceil(n / perGroup);
}
