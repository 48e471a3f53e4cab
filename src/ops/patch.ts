// Images <-> rows of patches (shaders/patch.wgsl). im2col makes a convolution a linear layer: DiT's patch
// embedding (k = s = patch on the NCHW input) and the CNN classifier's convolutions on channels-last
// activations. unpatchify turns DiT's final tokens back into an NCHW image.
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
import { flatGrid } from "./grid.ts";

const SHADER = "patch";
const WG = 256;
const BINDINGS = ["read", "read_write", "uniform"] as const;

/** nchw: [B, C, H, W]; nhwc (channels last): [B, H, W, C], e.g. a [B, H*W, C] activation. */
export type ImageLayout = "nchw" | "nhwc";

export interface Im2colGeometry {
  batch: number;
  channels: number;
  height: number;
  width: number;
  /** Square window k x k, moved by `stride`, over the image padded with `padding` zeros on every side. */
  kernel: number;
  stride: number;
  padding: number;
  layout: ImageLayout;
}

/** `batch` images [B, C, H, W] cut into (H/patch) x (W/patch) non-overlapping patches, row-major. */
export interface PatchGeometry {
  batch: number;
  channels: number;
  height: number;
  width: number;
  patch: number;
  /** Order of each token's vector: (c, py, px) by default, (py, px, c) for "channels_last" (diffusers' DiT). */
  order?: "channels_first" | "channels_last";
}

export interface PatchOp {
  dispatches: Dispatch[];
  /** im2col: [B, Ho*Wo, C*k*k] or options.out; unpatchify: [B, C, H, W]. */
  out: Tensor;
  /** Releases the uniform and `out` unless it was options.out; never the input. */
  release(): void;
}

/** Ho and Wo of im2col: floor((H + 2p - k) / s) + 1, likewise for W. */
export function im2colOutputSize(geom: Im2colGeometry): { outHeight: number; outWidth: number } {
  const { height, width, kernel, stride, padding } = geom;
  return {
    outHeight: Math.floor((height + 2 * padding - kernel) / stride) + 1,
    outWidth: Math.floor((width + 2 * padding - kernel) / stride) + 1,
  };
}

function isCount(n: number): boolean {
  return Number.isInteger(n) && n >= 1;
}

function describeIm2col(x: Tensor, g: Im2colGeometry): string {
  const image = `batch ${g.batch}, channels ${g.channels}, ${g.height}x${g.width}`;
  const window = `kernel ${g.kernel}, stride ${g.stride}, padding ${g.padding}, ${g.layout}`;
  return `x ${formatShape(x.shape)}, geometry {${image}, ${window}}`;
}

function checkF32(kernel: string, what: string, t: Tensor): void {
  if (t.dtype !== "f32") throw new KernelError(kernel, `${what} is ${t.dtype}, expected f32`);
}

function checkIm2col(ctx: GpuContext, x: Tensor, geom: Im2colGeometry, out?: Tensor): number[] {
  const what = describeIm2col(x, geom);
  const { batch, channels, height, width, kernel, stride, padding, layout } = geom;
  if (![batch, channels, height, width, kernel, stride].every(isCount)) {
    throw new KernelError("im2col", `${what}: batch, channels, height, width, kernel, stride must be >= 1`);
  }
  if (!Number.isInteger(padding) || padding < 0) {
    throw new KernelError("im2col", `${what}: padding must be an integer >= 0`);
  }
  if (layout !== "nchw" && layout !== "nhwc") {
    throw new KernelError("im2col", `${what}: layout must be "nchw" or "nhwc"`);
  }
  const [paddedHeight, paddedWidth] = [height + 2 * padding, width + 2 * padding];
  if (kernel > paddedHeight || kernel > paddedWidth) {
    throw new KernelError(
      "im2col",
      `${what}: kernel ${kernel} is larger than the padded image ${paddedHeight}x${paddedWidth}`,
    );
  }
  checkF32("im2col", `x ${formatShape(x.shape)}`, x);
  const pixels = batch * channels * height * width;
  if (x.size !== pixels) {
    throw new KernelError(
      "im2col",
      `${what}: x holds ${x.size} values, the geometry needs B*C*H*W = ${pixels}`,
    );
  }
  const { outHeight, outWidth } = im2colOutputSize(geom);
  const shape = [batch, outHeight * outWidth, channels * kernel * kernel];
  if (out) {
    checkF32("im2col", `out ${formatShape(out.shape)}`, out);
    if (out.size !== shape[0] * shape[1] * shape[2]) {
      throw new KernelError(
        "im2col",
        `${what}: out ${formatShape(out.shape)} must hold ${formatShape(shape)} = [B, Ho*Wo, C*k*k]`,
      );
    }
    if (out.buffer === x.buffer) throw new KernelError("im2col", `${what}: out shares x's buffer`);
    return shape;
  }
  // Padding and overlapping windows can make the output far larger than x: it must fit one binding.
  const bytes = shape.reduce((a, b) => a * b, 4);
  const limit = ctx.gpu.info.limits.maxStorageBufferBindingSize;
  if (bytes > limit) {
    throw new KernelError(
      "im2col",
      `${what}: out ${formatShape(shape)} needs ${bytes} bytes, over maxStorageBufferBindingSize ${limit}`,
    );
  }
  return shape;
}

interface Launch {
  entry: "im2col" | "unpatchify";
  src: Tensor;
  dst: Tensor;
  geom: Omit<Im2colGeometry, "batch" | "layout">;
  outWidth: number;
  positions: number;
  channelsLast: boolean;
}

function launch(ctx: GpuContext, spec: Launch): Dispatch {
  const kernel = ctx.kernels.get({ name: SHADER, entry: spec.entry, bindings: BINDINGS, constants: { WG } });
  const { channels, height, width, kernel: k, stride, padding } = spec.geom;
  return bindKernel(
    ctx.gpu,
    kernel,
    [spec.src, spec.dst],
    flatGrid(ctx.gpu, groups(spec.dst.size, WG)),
    packUniform([
      ["u32", spec.dst.size],
      ["u32", channels],
      ["u32", height],
      ["u32", width],
      ["u32", k],
      ["u32", stride],
      ["u32", padding],
      ["u32", spec.outWidth],
      ["u32", spec.positions],
      ["u32", Number(spec.channelsLast)],
    ]),
  );
}

function finish(dispatch: Dispatch, out: Tensor, owned: boolean): PatchOp {
  return {
    dispatches: [dispatch],
    out,
    release() {
      if (owned) out.release();
      disposeDispatches([dispatch]);
    },
  };
}

/**
 * Rows of patches out [B, Ho*Wo, C*k*k] of `geom.batch` images x in `geom.layout` (any shape holding
 * B*C*H*W values), positions row-major, each patch ordered (c, ky, kx) like PyTorch's Conv2d weight, zeros
 * where the window covers padding. Written into options.out (same element count) or a new tensor.
 */
export function im2col(
  ctx: GpuContext,
  x: Tensor,
  geom: Im2colGeometry,
  options: { out?: Tensor } = {},
): PatchOp {
  const shape = checkIm2col(ctx, x, geom, options.out);
  const out = options.out ?? ctx.pool.tensor(shape);
  const dispatch = launch(ctx, {
    entry: "im2col",
    src: x,
    dst: out,
    geom,
    outWidth: im2colOutputSize(geom).outWidth,
    positions: shape[1],
    channelsLast: geom.layout === "nhwc",
  });
  return finish(dispatch, out, !options.out);
}

/**
 * tokens [B, (H/p)*(W/p), C*p*p] (any shape holding those values), vectors ordered (c, py, px) -> a new image
 * [B, C, H, W].
 */
export function unpatchify(ctx: GpuContext, tokens: Tensor, geom: PatchGeometry): PatchOp {
  const { batch, channels, height, width, patch } = geom;
  const what = `tokens ${formatShape(tokens.shape)}, geometry {batch ${batch}, channels ${channels}, ` +
    `${height}x${width}, patch ${patch}}`;
  if (![batch, channels, height, width, patch].every(isCount)) {
    throw new KernelError(
      "unpatchify",
      `${what}: batch, channels, height, width, patch must be integers >= 1`,
    );
  }
  if (height % patch !== 0 || width % patch !== 0) {
    throw new KernelError("unpatchify", `${what}: height and width must be multiples of patch ${patch}`);
  }
  checkF32("unpatchify", `tokens ${formatShape(tokens.shape)}`, tokens);
  const positions = (height / patch) * (width / patch);
  const tokenShape = [batch, positions, channels * patch * patch];
  const values = batch * height * width * channels;
  if (tokens.size !== values) {
    throw new KernelError(
      "unpatchify",
      `${what}: tokens hold ${tokens.size} values, [B, (H/p)*(W/p), C*p*p] = ${formatShape(tokenShape)} ` +
        `needs ${values}`,
    );
  }
  // The image holds as many values as the tokens, which fit a binding: no size limit to check.
  const out = ctx.pool.tensor([batch, channels, height, width]);
  const dispatch = launch(ctx, {
    entry: "unpatchify",
    src: tokens,
    dst: out,
    geom: { channels, height, width, kernel: patch, stride: patch, padding: 0 },
    outWidth: width / patch,
    positions,
    channelsLast: geom.order === "channels_last",
  });
  return finish(dispatch, out, true);
}
