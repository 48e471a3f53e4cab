// out = x / divisor[c] + shift[c] per channel c of x [B, C, ...] (shaders/channel_affine.wgsl): WanPipeline's
// de-normalisation of the denoised latents by the VAE's latents_std and latents_mean.
import type { GpuContext } from "../gpu/context.ts";
import {
  bindKernel,
  type Dispatch,
  disposeDispatches,
  groups,
  KernelError,
  packUniform,
} from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { elementwiseSource } from "./axpy.ts";
import { flatGrid } from "./grid.ts";

const KERNEL = "channel_affine";
const WG = 256;
const ITEMS = 4;
const BINDINGS = ["read", "read", "read", "read_write", "uniform"] as const;

export interface ChannelAffine {
  dispatches: Dispatch[];
  /** A new tensor of x's shape, or options.out. */
  out: Tensor;
  /** Releases the uniform and `out` if the op allocated it; never its inputs. */
  release(): void;
}

export function channelAffine(
  ctx: GpuContext,
  x: Tensor,
  params: { divisor: Tensor; shift: Tensor },
  options: { out?: Tensor } = {},
): ChannelAffine {
  const fail = (why: string): never => {
    throw new KernelError(KERNEL, `x ${formatShape(x.shape)}: ${why}`);
  };
  if (x.dtype !== "f32" || x.shape.length < 2) fail("x must be f32 [B, C, ...]");
  const channels = x.shape[1];
  for (const [name, t] of Object.entries(params)) {
    if (t.dtype !== "f32" || t.shape.join() !== `${channels}`) {
      fail(`${name} ${formatShape(t.shape)} must be f32 [C] = [${channels}]`);
    }
  }
  const { out: given } = options;
  if (
    given && (given.dtype !== "f32" || given.shape.join() !== x.shape.join() || given.buffer === x.buffer)
  ) {
    fail(`out ${formatShape(given.shape)} must be another f32 tensor of x's shape`);
  }
  const plane = x.size / (x.shape[0] * channels);
  const { source, width } = elementwiseSource(KERNEL, plane);
  const count = x.size / width;
  const kernel = ctx.kernels.get({ name: KERNEL, source, bindings: BINDINGS, constants: { WG, ITEMS } });
  const out = given ?? ctx.pool.tensor(x.shape);
  const uniform = packUniform([["u32", count], ["u32", plane / width], ["u32", channels], ["u32", 0]]);
  const grid = flatGrid(ctx.gpu, groups(count, WG * ITEMS));
  const dispatches = [bindKernel(ctx.gpu, kernel, [x, params.divisor, params.shift, out], grid, uniform)];
  return {
    dispatches,
    out,
    release() {
      if (!given) out.release();
      disposeDispatches(dispatches);
    },
  };
}
