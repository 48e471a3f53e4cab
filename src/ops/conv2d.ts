// 2-D convolution (PyTorch Conv2d layout: x [B, C, H, W], w [O, C, K, K]), stride 1 with zero padding, and
// optionally reading x nearest-upsampled (shaders/conv2d.wgsl + the generated tile of src/ops/conv2d_wgsl.ts).
// The VAE decoder is made of these: 3x3 convs, 1x1 shortcuts and post_quant_conv, and Upsample2D's
// interpolate-then-conv as one dispatch. The same kernel with temporal taps is src/ops/conv3d.ts.
import type { GpuContext } from "../gpu/context.ts";
import { bindKernel, type Dispatch, disposeDispatches, KernelError, packUniform } from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { COLUMNS_PER_LANE, conv2dShader, type Conv2dTiling } from "./conv2d_wgsl.ts";
import { isWeightDType, type WeightDType } from "./stored_weights.ts";

const KERNEL = "conv2d";
const BINDINGS = ["read", "read", "read", "read_write", "read", "uniform"] as const;
const FLAG_BIAS = 1;
const FLAG_ACCUMULATE = 2;
/** Lanes per workgroup (at most: a narrow layer with few channels gets fewer). */
const LANES = 64;
/** Lanes along output columns on wide images (64 columns a workgroup), as VAEs of 256 px and up have. */
const MAX_LANE_COLUMNS = 16;

const powerOfTwoAtLeast = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * The workgroup's lanes go along output columns up to the row's width, the rest along output channels: a
 * lane past the row's end computes a whole window for nothing, so a fixed 64-column tile left 7 of 8 lanes
 * idle on the 8-pixel rows of a small VAE's first level (and half of them on 32-pixel rows). Narrow rows
 * also take 8 output channels per lane instead of 4: more multiply-adds per loaded input value, which on
 * llvmpipe took mnist-flux's 32x32 decode from 670 to 540 ms; wide images keep the tile they were tuned on.
 */
export function conv2dTiling(outWidth: number, outChannels: number): Conv2dTiling {
  const laneColumns = Math.min(MAX_LANE_COLUMNS, powerOfTwoAtLeast(Math.ceil(outWidth / COLUMNS_PER_LANE)));
  const channelsPerLane = laneColumns < MAX_LANE_COLUMNS ? 8 : 4;
  const laneChannels = Math.min(
    LANES / laneColumns,
    powerOfTwoAtLeast(Math.ceil(outChannels / channelsPerLane)),
  );
  return { channelsPerLane, laneColumns, laneChannels };
}

export interface Conv2dGeometry {
  batch: number;
  channels: number;
  height: number;
  width: number;
  outChannels: number;
  kernel: number;
  padding: number;
  /** Nearest-neighbour factor applied to x before the convolution (default 1). */
  upsample?: number;
}

export interface Conv2dOptions {
  padding: number;
  upsample?: number;
  /** [O] */
  bias?: Tensor;
  /** Write into this [B, O, Ho, Wo] tensor; with accumulate, add onto what it holds. */
  out?: Tensor;
  accumulate?: boolean;
}

export interface Conv2d {
  dispatches: Dispatch[];
  out: Tensor;
  geometry: Conv2dGeometry;
  release(): void;
}

function check(
  x: Tensor,
  w: Tensor,
  options: Conv2dOptions,
): { geometry: Conv2dGeometry; outShape: number[] } {
  const shapes = `x ${formatShape(x.shape)}, w ${formatShape(w.shape)}`;
  const fail = (why: string) => {
    throw new KernelError(KERNEL, `${shapes}: ${why}`);
  };
  if (x.dtype !== "f32" || x.shape.length !== 4) fail("x must be f32 [B, C, H, W]");
  if (!isWeightDType(w.dtype) || w.shape.length !== 4 || w.shape[2] !== w.shape[3]) {
    fail("w must be f32, f16 or bf16 [O, C, K, K]");
  }
  const [batch, channels, height, width] = x.shape;
  const [outChannels, wChannels, kernel] = w.shape;
  if (wChannels !== channels) fail(`C of x (${channels}) differs from C of w (${wChannels})`);
  const { padding, upsample = 1 } = options;
  if (!Number.isInteger(padding) || padding < 0 || padding >= kernel) {
    fail(`padding ${padding} must be in 0..K-1`);
  }
  if (!Number.isInteger(upsample) || upsample < 1) fail(`upsample ${upsample} must be a positive integer`);
  const outHeight = height * upsample + 2 * padding - kernel + 1;
  const outWidth = width * upsample + 2 * padding - kernel + 1;
  if (outHeight < 1 || outWidth < 1) fail(`the ${kernel}x${kernel} kernel is larger than the padded input`);
  const outShape = [batch, outChannels, outHeight, outWidth];
  const { bias, out } = options;
  if (bias && (bias.dtype !== "f32" || bias.shape.join() !== `${outChannels}`)) {
    fail(`bias ${formatShape(bias.shape)} must be f32 [O] = [${outChannels}]`);
  }
  if (out && (out.dtype !== "f32" || out.shape.join() !== outShape.join())) {
    fail(`out ${formatShape(out.shape)} must be f32 ${formatShape(outShape)}`);
  }
  if (options.accumulate && !out) fail("accumulate needs out to add onto");
  if (out && (out.buffer === x.buffer || out.buffer === w.buffer)) fail("out shares a buffer with x or w");
  return {
    geometry: { batch, channels, height, width, outChannels, kernel, padding, upsample },
    outShape,
  };
}

export function conv2d(ctx: GpuContext, x: Tensor, w: Tensor, options: Conv2dOptions): Conv2d {
  const { geometry, outShape } = check(x, w, options);
  const launch = {
    ...geometry,
    outHeight: outShape[2],
    outWidth: outShape[3],
    upsample: geometry.upsample ?? 1,
    images: geometry.batch,
    frameBatch: geometry.batch,
    temporal: 1,
    split: 1,
    x,
    w,
    bias: options.bias,
    accumulate: options.accumulate ?? false,
  };
  return { ...convolution(ctx, launch, outShape, options.out), geometry };
}

/** One checked convolution, as conv2d and causalConv3d (src/ops/conv3d.ts) bind it. */
export interface ConvolutionLaunch {
  channels: number;
  height: number;
  width: number;
  outChannels: number;
  outHeight: number;
  outWidth: number;
  kernel: number;
  padding: number;
  upsample: number;
  /** Output images before a split: frames * frameBatch. */
  images: number;
  frameBatch: number;
  /** KT; history holds the KT - 1 frames before x when it is above 1. */
  temporal: number;
  split: number;
  x: Tensor;
  w: Tensor;
  history?: Tensor;
  bias?: Tensor;
  out: Tensor;
  accumulate: boolean;
}

/**
 * The dispatch of `launch` (shapes checked by the caller) into `given` or a new tensor of `outShape`; release()
 * frees the uniform and the tensor if it made it.
 */
export function convolution(
  ctx: GpuContext,
  launch: Omit<ConvolutionLaunch, "out">,
  outShape: readonly number[],
  given?: Tensor,
): { dispatches: Dispatch[]; out: Tensor; release(): void } {
  const out = given ?? ctx.pool.tensor(outShape);
  let dispatches: Dispatch[];
  try {
    dispatches = [bindConvolution(ctx, { ...launch, out })];
  } catch (e) {
    if (!given) out.release();
    throw e;
  }
  return {
    dispatches,
    out,
    release() {
      if (!given) out.release();
      disposeDispatches(dispatches);
    },
  };
}

function bindConvolution(ctx: GpuContext, c: ConvolutionLaunch): Dispatch {
  const t = conv2dTiling(c.outWidth, c.outChannels);
  const oTiles = Math.ceil(c.outChannels / (t.channelsPerLane * t.laneChannels));
  const grid = [
    Math.ceil(c.outWidth / (COLUMNS_PER_LANE * t.laneColumns)),
    c.outHeight,
    c.images * oTiles,
  ] as const;
  const limit = ctx.gpu.info.limits.maxComputeWorkgroupsPerDimension;
  if (grid.some((g) => g > limit)) {
    throw new KernelError(
      KERNEL,
      `x ${formatShape(c.x.shape)}: [${
        grid.join(", ")
      }] workgroups exceed maxComputeWorkgroupsPerDimension ${limit}`,
    );
  }
  const kernelSpec = ctx.kernels.get({
    name: KERNEL,
    source: conv2dShader(t, { kernel: c.kernel, temporal: c.temporal, weights: c.w.dtype as WeightDType }),
    bindings: BINDINGS,
  });
  const flags = (c.bias ? FLAG_BIAS : 0) | (c.accumulate ? FLAG_ACCUMULATE : 0);
  const uniform = packUniform([
    ["u32", c.channels],
    ["u32", c.height],
    ["u32", c.width],
    ["u32", c.outChannels],
    ["u32", c.outHeight],
    ["u32", c.outWidth],
    ["u32", c.padding],
    ["u32", c.upsample],
    ["u32", oTiles],
    ["u32", flags],
    ["u32", c.frameBatch],
    ["u32", c.split],
    ["u32", c.outChannels / c.split],
  ]);
  // Unused read-only bindings (no bias, no history) repeat x, which is never read through them.
  return bindKernel(ctx.gpu, kernelSpec, [c.x, c.w, c.bias ?? c.x, c.out, c.history ?? c.x], grid, uniform);
}
