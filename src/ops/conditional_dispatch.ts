// Two alternative dispatch lists (a compute path and its cached replacement) made conditional on a decision
// taken on the GPU: each dispatch reads its workgroup counts from a slot of an indirect-arguments buffer that
// a decision kernel fills, full size on the chosen path and zero on the other. Shared by the cache decision
// kernels; the plan tensor tells a kernel each slot's full size and path.
import type { GpuContext } from "../gpu/context.ts";
import { type Dispatch, KernelError } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";

export interface Branches {
  /** Run when the decision computes. */
  compute: readonly Dispatch[];
  /** Run when the decision reuses the cache. */
  cached: readonly Dispatch[];
}

export interface ConditionalDispatches {
  /** [slots, 4] u32: workgroups x, y, z, then the path (0 compute, 1 cached). */
  plan: Tensor;
  /** [3 * slots] u32 indirect arguments, written by the decision kernel. */
  args: GPUBuffer;
  slots: number;
  /** The branches as indirect dispatches sharing the originals' pipelines, bind groups and uniforms. */
  branches: { compute: Dispatch[]; cached: Dispatch[] };
  release(): void;
}

export function conditionalDispatches(
  ctx: GpuContext,
  kernel: string,
  branches: Branches,
): ConditionalDispatches {
  const slots = [...branches.compute, ...branches.cached];
  if (slots.some((d) => d.indirect)) throw new KernelError(kernel, "a branch dispatch is already indirect");
  const plan = new Uint32Array(4 * Math.max(slots.length, 1));
  slots.forEach((d, j) => plan.set([...d.workgroups, j < branches.compute.length ? 0 : 1], 4 * j));
  const planTensor = ctx.pool.upload(plan, [plan.length / 4, 4]);
  const args = ctx.gpu.device.createBuffer({
    label: `${kernel}.args`,
    size: 12 * Math.max(slots.length, 1),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.INDIRECT,
  });
  // The uniform stays owned (and released) by the op that built the original dispatch.
  const indirect = (d: Dispatch, j: number): Dispatch => ({
    ...d,
    uniform: undefined,
    indirect: { buffer: args, offset: 12 * j },
  });
  return {
    plan: planTensor,
    args,
    slots: slots.length,
    branches: {
      compute: branches.compute.map((d, j) => indirect(d, j)),
      cached: branches.cached.map((d, j) => indirect(d, branches.compute.length + j)),
    },
    release() {
      planTensor.release();
      args.destroy();
    },
  };
}
