// Fused relative L1 difference, the measure every cache decision is made on (cache-strategies.md).
import type { GpuContext } from "../gpu/context.ts";
import {
  bindKernel,
  type Dispatch,
  disposeDispatches,
  groups,
  KernelError,
  type KernelSpec,
  packUniform,
} from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";

const WG = 256;
const ITEMS = 16;
const BINDINGS = ["read", "read", "read_write", "read_write", "read_write", "uniform"] as const;

export interface ResidualDiffOptions {
  /** Leading dimension treated as samples, each also reported alone (default 1). */
  samples?: number;
  /** Use every k-th channel of the last dimension only (cache-strategies.md `downsample_factor`). */
  downsample?: number;
}

export interface ResidualDiff {
  dispatches: Dispatch[];
  /** [1 + samples]: the overall diff, then one per sample. */
  result: Tensor;
  /** [1 + samples, 2]: mean|a - b| and mean|a| over what the diff visits, overall then per sample. */
  means: Tensor;
  /** Releases the scratch and result tensors. */
  release(): void;
}

/** diff(a, b) = mean|a - b| / mean|a| over the whole tensor, in two dispatches. */
export function residualDiff(
  ctx: GpuContext,
  a: Tensor,
  b: Tensor,
  options: ResidualDiffOptions = {},
): ResidualDiff {
  const name = "residual_diff";
  const samples = options.samples ?? 1;
  const downsample = options.downsample ?? 1;
  if (a.shape.join() !== b.shape.join()) {
    throw new KernelError(name, `shapes differ: a ${formatShape(a.shape)}, b ${formatShape(b.shape)}`);
  }
  if (a.dtype !== "f32" || b.dtype !== "f32") throw new KernelError(name, "a and b must be f32");
  if (!Number.isInteger(samples) || samples < 1 || a.size % samples !== 0) {
    throw new KernelError(name, `samples ${samples} must be a positive integer dividing ${a.size} elements`);
  }
  const channels = a.shape[a.shape.length - 1];
  if (!Number.isInteger(downsample) || downsample < 1 || downsample > channels) {
    throw new KernelError(name, `downsample ${downsample} is outside 1..${channels} (the last dimension)`);
  }
  const perSample = a.size / samples;
  const visited = (perSample / channels) * Math.ceil(channels / downsample);
  const chunks = groups(visited, WG * ITEMS);
  const partial = ctx.pool.tensor([samples * chunks, 2]);
  const result = ctx.pool.tensor([1 + samples]);
  const means = ctx.pool.tensor([1 + samples, 2]);
  const uniform = packUniform([
    ["u32", perSample],
    ["u32", channels],
    ["u32", downsample],
    ["u32", chunks],
    ["u32", samples],
  ]);
  const spec = (entry: string): KernelSpec => ({ name, entry, bindings: BINDINGS, constants: { WG } });
  const buffers = [a, b, partial, result, means];
  const dispatches = [
    bindKernel(ctx.gpu, ctx.kernels.get(spec("partials")), buffers, [chunks, samples, 1], uniform),
    bindKernel(ctx.gpu, ctx.kernels.get(spec("finish")), buffers, [1, 1, 1], uniform),
  ];
  return {
    dispatches,
    result,
    means,
    release() {
      partial.release();
      result.release();
      means.release();
      disposeDispatches(dispatches);
    },
  };
}
