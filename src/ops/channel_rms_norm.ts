// RMS normalisation across the channels of NCHW activations with an optional fused SiLU
// (shaders/channel_rms_norm.wgsl): diffusers' WanRMS_norm, the norm of every Wan VAE residual block, of its
// mid-block attention and of the decoder's output.
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

const KERNEL = "channel_rms_norm";
const WG = 64;
const BINDINGS = ["read", "read", "read", "read_write", "uniform"] as const;
/** F.normalize's default floor on the norm. */
export const NORMALIZE_EPS = 1e-12;

export interface ChannelRmsNormGeometry {
  /** N: images (frames * batch for frame-major video activations). */
  images: number;
  channels: number;
  /** Values per channel plane (H * W). */
  spatial: number;
  eps: number;
}

export interface ChannelRmsNormOptions {
  /** [C] */
  gamma: Tensor;
  /** [C] */
  bias?: Tensor;
  silu?: boolean;
  /** Default NORMALIZE_EPS. */
  eps?: number;
  /** Normalise x in place instead of into `out` or a new tensor. */
  inPlace?: boolean;
  /** Write into this tensor of x's shape. */
  out?: Tensor;
}

export interface ChannelRmsNorm {
  dispatches: Dispatch[];
  out: Tensor;
  geometry: ChannelRmsNormGeometry;
  /** Releases the uniform, the stand-in and `out` if the op allocated it; never x. */
  release(): void;
}

function check(x: Tensor, o: ChannelRmsNormOptions): ChannelRmsNormGeometry {
  const fail = (why: string): never => {
    throw new KernelError(KERNEL, `x ${formatShape(x.shape)}: ${why}`);
  };
  if (x.dtype !== "f32" || x.shape.length < 2) fail("x must be f32 [N, C, ...]");
  const [images, channels] = x.shape;
  const eps = o.eps ?? NORMALIZE_EPS;
  if (!(eps > 0)) fail(`eps ${eps} must be > 0`);
  for (const [name, t] of [["gamma", o.gamma], ["bias", o.bias]] as const) {
    if (t && (t.dtype !== "f32" || t.shape.join() !== `${channels}`)) {
      fail(`${name} ${formatShape(t.shape)} must be f32 [C] = [${channels}]`);
    }
  }
  if (o.inPlace && o.out) fail("give inPlace or out, not both");
  if (
    o.out && (o.out.dtype !== "f32" || o.out.shape.join() !== x.shape.join() || o.out.buffer === x.buffer)
  ) {
    fail(`out ${formatShape(o.out.shape)} must be another f32 tensor of x's shape`);
  }
  return { images, channels, spatial: x.size / (images * channels), eps };
}

export function channelRmsNorm(ctx: GpuContext, x: Tensor, options: ChannelRmsNormOptions): ChannelRmsNorm {
  const geometry = check(x, options);
  const { images, channels, spatial, eps } = geometry;
  const inPlace = options.inPlace ?? false;
  const { source, width } = elementwiseSource(KERNEL, spatial);
  const count = images * spatial / width;
  const kernel = ctx.kernels.get({
    name: KERNEL,
    source,
    bindings: BINDINGS,
    constants: { WG, IN_PLACE: Number(inPlace) },
  });
  const uniform = packUniform([
    ["u32", count],
    ["u32", spatial / width],
    ["u32", channels],
    ["u32", (options.bias ? 1 : 0) | (options.silu ? 2 : 0)],
    ["f32", Math.sqrt(channels)],
    ["f32", eps],
  ]);
  // Read-only bindings the instance does not read hold a stand-in, never a buffer also bound writable.
  const standIn = ctx.pool.tensor([4]);
  const out = inPlace ? x : options.out ?? ctx.pool.tensor(x.shape);
  const buffers = [inPlace ? standIn : x, options.gamma, options.bias ?? standIn, out];
  const dispatches = [bindKernel(ctx.gpu, kernel, buffers, flatGrid(ctx.gpu, groups(count, WG)), uniform)];
  return {
    dispatches,
    out,
    geometry,
    release() {
      standIn.release();
      if (!inPlace && !options.out) out.release();
      disposeDispatches(dispatches);
    },
  };
}
