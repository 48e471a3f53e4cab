// The only way data comes back from the GPU. Each call costs >= 11 ms in Deno and blocks the event loop
// while it waits, so it is counted: a denoising loop should show at most one per image.
import type { Gpu } from "./device.ts";
import type { Tensor } from "./tensor.ts";

let readbacks = 0;

export function readbackCount(): number {
  return readbacks;
}

export async function readback(gpu: Gpu, tensor: Tensor): Promise<Float32Array | Uint32Array | Int32Array> {
  const bytes = tensor.byteLength;
  const staging = gpu.device.createBuffer({
    size: Math.ceil(bytes / 4) * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const encoder = gpu.device.createCommandEncoder({ label: "readback" });
    encoder.copyBufferToBuffer(tensor.buffer, 0, staging, 0, staging.size);
    gpu.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    readbacks++;
    const copy = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    if (tensor.dtype === "u32") return new Uint32Array(copy);
    if (tensor.dtype === "i32") return new Int32Array(copy);
    return new Float32Array(copy);
  } finally {
    staging.destroy();
  }
}

export async function readFloats(gpu: Gpu, tensor: Tensor): Promise<Float32Array> {
  if (tensor.dtype !== "f32") throw new Error(`readFloats: tensor is ${tensor.dtype}, expected f32`);
  return await readback(gpu, tensor) as Float32Array;
}
