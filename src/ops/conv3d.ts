// Causal 3-D convolution (PyTorch Conv3d weights w [O, C, KT, K, K]) of frame-major video activations
// x [T, B, C, H, W], as Wan's VAE computes it chunk by chunk (diffusers' WanCausalConv3d with its feature
// cache): output frame t reads frames t .. t + KT - 1 of [history, x], history [KT - 1, B, C, H, W] holding the
// frames before x (the previous chunk's last ones, zeros before the first chunk). Spatially stride 1 with zero
// padding. It is conv2d's kernel (shaders/conv2d.wgsl) with temporal taps; frame-major keeps every frame a
// batch of images, so the 2-D layers between (upsampling convs, attention, norms) run on [T * B, C, H, W].
import type { GpuContext } from "../gpu/context.ts";
import { type Dispatch, KernelError } from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { convolution } from "./conv2d.ts";
import { isWeightDType } from "./stored_weights.ts";

const KERNEL = "conv3d";

export interface CausalConv3dGeometry {
  /** T of x. */
  frames: number;
  batch: number;
  channels: number;
  height: number;
  width: number;
  outChannels: number;
  /** K of the K x K spatial window. */
  kernel: number;
  /** KT: frames per output frame. */
  temporalKernel: number;
  padding: number;
  /** Output frames per input frame: channel block s of outChannels / split becomes frame t * split + s. */
  split: number;
}

export interface CausalConv3dOptions {
  /** Spatial zero padding on every side. */
  padding: number;
  /** [KT - 1, B, C, H, W], the frames before x; required when KT > 1. */
  history?: Tensor;
  /** [O] */
  bias?: Tensor;
  /** Wan's time_conv: 2 (its 2C output channels are two frames of C). Default 1. */
  split?: number;
  /** Write into this [T * split, B, O / split, Ho, Wo] tensor; with accumulate, add onto what it holds. */
  out?: Tensor;
  accumulate?: boolean;
}

export interface CausalConv3d {
  dispatches: Dispatch[];
  out: Tensor;
  geometry: CausalConv3dGeometry;
  release(): void;
}

function check(x: Tensor, w: Tensor, o: CausalConv3dOptions) {
  const shapes = `x ${formatShape(x.shape)}, w ${formatShape(w.shape)}`;
  const fail = (why: string): never => {
    throw new KernelError(KERNEL, `${shapes}: ${why}`);
  };
  if (x.dtype !== "f32" || x.shape.length !== 5) fail("x must be f32 [T, B, C, H, W]");
  if (!isWeightDType(w.dtype) || w.shape.length !== 5 || w.shape[3] !== w.shape[4]) {
    fail("w must be f32, f16 or bf16 [O, C, KT, K, K]");
  }
  const [frames, batch, channels, height, width] = x.shape;
  const [outChannels, wChannels, temporalKernel, kernel] = w.shape;
  if (wChannels !== channels) fail(`C of x (${channels}) differs from C of w (${wChannels})`);
  const { padding, split = 1 } = o;
  if (!Number.isInteger(padding) || padding < 0 || padding >= kernel) {
    fail(`padding ${padding} must be in 0..K-1`);
  }
  if (!Number.isInteger(split) || split < 1 || outChannels % split !== 0) {
    fail(`split ${split} must be a positive integer dividing O = ${outChannels}`);
  }
  const historyShape = [temporalKernel - 1, batch, channels, height, width];
  if (temporalKernel > 1) {
    const h = o.history;
    if (!h || h.dtype !== "f32" || h.shape.join() !== historyShape.join()) {
      fail(
        `history ${h ? formatShape(h.shape) : "(none)"} must be f32 [KT - 1, B, C, H, W] = ${
          formatShape(historyShape)
        }`,
      );
    }
  } else if (o.history) fail("history is for KT > 1; this kernel reads no frame before x");
  const [outHeight, outWidth] = [height + 2 * padding - kernel + 1, width + 2 * padding - kernel + 1];
  if (outHeight < 1 || outWidth < 1) fail(`the ${kernel}x${kernel} window is larger than the padded frame`);
  const outShape = [frames * split, batch, outChannels / split, outHeight, outWidth];
  const { bias, out } = o;
  if (bias && (bias.dtype !== "f32" || bias.shape.join() !== `${outChannels}`)) {
    fail(`bias ${formatShape(bias.shape)} must be f32 [O] = [${outChannels}]`);
  }
  if (out && (out.dtype !== "f32" || out.shape.join() !== outShape.join())) {
    fail(`out ${formatShape(out.shape)} must be f32 ${formatShape(outShape)}`);
  }
  if (o.accumulate && !out) fail("accumulate needs out to add onto");
  if (out && [x, w, o.history].some((t) => t?.buffer === out.buffer)) {
    fail("out shares a buffer with x, w or history");
  }
  const geometry: CausalConv3dGeometry = {
    frames,
    batch,
    channels,
    height,
    width,
    outChannels,
    kernel,
    temporalKernel,
    padding,
    split,
  };
  return { geometry, outShape };
}

export function causalConv3d(
  ctx: GpuContext,
  x: Tensor,
  w: Tensor,
  options: CausalConv3dOptions,
): CausalConv3d {
  const { geometry: g, outShape } = check(x, w, options);
  const launch = {
    ...g,
    outHeight: outShape[3],
    outWidth: outShape[4],
    upsample: 1,
    images: g.frames * g.batch,
    frameBatch: g.batch,
    temporal: g.temporalKernel,
    x,
    w,
    history: options.history,
    bias: options.bias,
    accumulate: options.accumulate ?? false,
  };
  return { ...convolution(ctx, launch, outShape, options.out), geometry: g };
}
