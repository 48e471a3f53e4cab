// 2-D convolution (PyTorch Conv2d layout: x [B, C, H, W], w [O, C, K, K]), stride 1 with zero padding, and
// optionally reading x nearest-upsampled (shaders/conv2d.wgsl + the generated tile of src/ops/conv2d_wgsl.ts).
// The VAE decoder is made of these: 3x3 convs, 1x1 shortcuts and post_quant_conv, and Upsample2D's
// interpolate-then-conv as one dispatch.
import type { GpuContext } from "../gpu/context.ts";
import { bindKernel, type Dispatch, disposeDispatches, KernelError, packUniform } from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { COLUMNS_PER_LANE, conv2dShader, type Conv2dTiling } from "./conv2d_wgsl.ts";
import { isWeightDType, type WeightDType } from "./stored_weights.ts";

const KERNEL = "conv2d";
const BINDINGS = ["read", "read", "read", "read_write", "uniform"] as const;
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
  const { batch, outChannels, kernel } = geometry;
  const [, , outHeight, outWidth] = outShape;
  const t = conv2dTiling(outWidth, outChannels);
  const oTiles = Math.ceil(outChannels / (t.channelsPerLane * t.laneChannels));
  const grid = [Math.ceil(outWidth / (COLUMNS_PER_LANE * t.laneColumns)), outHeight, batch * oTiles] as const;
  const limit = ctx.gpu.info.limits.maxComputeWorkgroupsPerDimension;
  if (grid.some((g) => g > limit)) {
    throw new KernelError(
      KERNEL,
      `x ${formatShape(x.shape)}: [${
        grid.join(", ")
      }] workgroups exceed maxComputeWorkgroupsPerDimension ${limit}`,
    );
  }
  const kernelSpec = ctx.kernels.get({
    name: KERNEL,
    source: conv2dShader(t, kernel, w.dtype as WeightDType),
    bindings: BINDINGS,
  });
  const out = options.out ?? ctx.pool.tensor(outShape);
  const flags = (options.bias ? FLAG_BIAS : 0) | (options.accumulate ? FLAG_ACCUMULATE : 0);
  const uniform = packUniform([
    ["u32", geometry.channels],
    ["u32", geometry.height],
    ["u32", geometry.width],
    ["u32", outChannels],
    ["u32", outHeight],
    ["u32", outWidth],
    ["u32", geometry.padding],
    ["u32", geometry.upsample ?? 1],
    ["u32", oTiles],
    ["u32", flags],
  ]);
  const dispatches = [bindKernel(ctx.gpu, kernelSpec, [x, w, options.bias ?? x, out], grid, uniform)];
  return {
    dispatches,
    out,
    geometry,
    release() {
      if (!options.out) out.release();
      disposeDispatches(dispatches);
    },
  };
}
