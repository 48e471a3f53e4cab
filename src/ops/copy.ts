// A buffer copy as a dispatch (shaders/copy.wgsl): the twin of a CopyCommand that can be made conditional
// (indirect), as every command of a span a GPU-side cache decision may skip must be.
import type { GpuContext } from "../gpu/context.ts";
import {
  bindKernel,
  type CopyCommand,
  type Dispatch,
  disposeDispatches,
  groups,
  KernelError,
  packUniform,
} from "../gpu/kernel.ts";
import { elementwiseSource } from "./axpy.ts";
import { flatGrid } from "./grid.ts";

const KERNEL = "copy";
const WG = 256;
const ITEMS = 4;
const BINDINGS = ["read", "read_write", "uniform"] as const;

export interface CopyDispatch {
  dispatches: Dispatch[];
  release(): void;
}

const bufferOf = (r: CopyCommand["copy"]["src"]): GPUBuffer => ("buffer" in r ? r.buffer : r);

/** The same bytes as `command` moves, moved by a dispatch; its source and destination must be two buffers. */
export function copyAsDispatch(ctx: GpuContext, command: CopyCommand): CopyDispatch {
  const { src, srcOffset, dst, dstOffset, bytes } = command.copy;
  if (bufferOf(src) === bufferOf(dst)) {
    throw new KernelError(
      KERNEL,
      `${command.label}: source and destination share a buffer, which one dispatch cannot read and write`,
    );
  }
  // CopyCommand keeps offsets and size multiples of 4 bytes: whole floats; vec4 when all are 16-byte aligned.
  const floats = [bytes, srcOffset, dstOffset].map((b) => b / 4);
  const { source, width } = elementwiseSource(KERNEL, floats.every((n) => n % 4 === 0) ? 4 : 1);
  const [count, from, to] = floats.map((n) => n / width);
  const kernel = ctx.kernels.get({ name: KERNEL, source, bindings: BINDINGS, constants: { WG, ITEMS } });
  const dispatches = [
    bindKernel(
      ctx.gpu,
      kernel,
      [src, dst],
      flatGrid(ctx.gpu, groups(count, WG * ITEMS)),
      packUniform([["u32", count], ["u32", from], ["u32", to], ["u32", 0]]),
    ),
  ];
  return { dispatches, release: () => disposeDispatches(dispatches) };
}
