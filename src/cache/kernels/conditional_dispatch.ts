// Dispatches made conditional on a decision taken on the GPU: each reads its workgroup counts from a slot of
// an indirect-arguments buffer that a decision kernel fills, full size when the slot's condition holds for
// the step and zero otherwise. A slot's condition is a code the decision kernels share (decision_abi.ts:
// the compute path, the cached path, and TaylorSeer's dispatches, gated by its history); a weighted slot's
// axpy coefficients are computed by the kernel and copied into its uniform. The plan tensor tells the kernel
// each slot's full size and code.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand, type Dispatch, KernelError } from "../../gpu/kernel.ts";
import type { Tensor } from "../../gpu/tensor.ts";

import { ON_CACHED, ON_COMPUTE } from "./decision_abi.ts";

export interface ConditionalSlot {
  dispatch: Dispatch;
  /** When it runs, as the decision kernel reads it. */
  code: number;
  /** The kernel computes this axpy's alpha and beta (uniform bytes 4..12) every step. */
  weighted?: boolean;
}

/** Copies of the kernel's per-slot weights ([2 * slots] f32) into the weighted slots' uniforms. */
export function weightCopies(kernel: string, weights: Tensor, slots: readonly ConditionalSlot[]): Command[] {
  return slots.flatMap((s, j) => {
    if (!s.weighted) return [];
    if (!s.dispatch.uniform) throw new KernelError(kernel, `weighted slot ${j} has no uniform to write`);
    return [
      copyCommand(`${kernel} weights`, weights, s.dispatch.uniform, {
        srcOffset: 8 * j,
        dstOffset: 4,
        bytes: 8,
      }),
    ];
  });
}

export interface Branches {
  /** Run when the decision computes. */
  compute: readonly Dispatch[];
  /** Run when the decision reuses the cache. */
  cached: readonly Dispatch[];
}

/** A compute path and its cached replacement as slots, compute first. */
export function branchSlots(branches: Branches): ConditionalSlot[] {
  return [
    ...branches.compute.map((dispatch) => ({ dispatch, code: ON_COMPUTE })),
    ...branches.cached.map((dispatch) => ({ dispatch, code: ON_CACHED })),
  ];
}

export interface ConditionalDispatches {
  /** [slots, 4] u32: workgroups x, y, z, then the condition code. */
  plan: Tensor;
  /** [3 * slots] u32 indirect arguments, written by the decision kernel. */
  args: GPUBuffer;
  /** The slots' dispatches made indirect, in slot order, sharing the originals' pipelines, bind groups and
   * uniforms (which stay owned by the ops that built them). */
  dispatches: Dispatch[];
  release(): void;
}

export function conditionalDispatches(
  ctx: GpuContext,
  kernel: string,
  slots: readonly ConditionalSlot[],
): ConditionalDispatches {
  if (slots.some((s) => s.dispatch.indirect)) {
    throw new KernelError(kernel, "a slot's dispatch is already indirect");
  }
  const plan = new Uint32Array(4 * Math.max(slots.length, 1));
  slots.forEach((s, j) => plan.set([...s.dispatch.workgroups, s.code], 4 * j));
  const planTensor = ctx.pool.upload(plan, [plan.length / 4, 4]);
  const args = ctx.gpu.device.createBuffer({
    label: `${kernel}.args`,
    size: 12 * Math.max(slots.length, 1),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.INDIRECT,
  });
  return {
    plan: planTensor,
    args,
    dispatches: slots.map((s, j) => ({
      ...s.dispatch,
      uniform: undefined,
      indirect: { buffer: args, offset: 12 * j },
    })),
    release() {
      planTensor.release();
      args.destroy();
    },
  };
}
