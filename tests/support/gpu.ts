// One GPU context per test file; WebGPU keeps handles open, so GPU tests opt out of the resource sanitizer.
import { GpuContext } from "../../src/gpu/context.ts";
import { type Dispatch, submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import type { Tensor } from "../../src/gpu/tensor.ts";

let shared: Promise<GpuContext> | undefined;

export function gpuContext(): Promise<GpuContext> {
  shared ??= GpuContext.create();
  return shared;
}

export function gpuTest(name: string, fn: (ctx: GpuContext) => Promise<void> | void): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => fn(await gpuContext()),
  });
}

/** Submits, waits and reads `out` back: the test-side path from dispatches to numbers. */
export async function runAndRead(
  ctx: GpuContext,
  dispatches: readonly Dispatch[],
  out: Tensor,
): Promise<Float32Array> {
  await ctx.kernels.ready();
  submitDispatches(ctx.gpu, dispatches);
  return await readFloats(ctx.gpu, out);
}
