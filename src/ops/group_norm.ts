// GroupNorm (PyTorch semantics) over NCHW with an optional fused SiLU (shaders/group_norm.wgsl): the norm of
// every ResnetBlock2D, of the VAE mid-block attention and of the decoder's output.
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

const KERNEL = "group_norm";
const WG = 256;
const ITEMS = 8;
const BINDINGS = ["read", "read", "read", "read_write", "read_write", "uniform"] as const;

export interface GroupNormGeometry {
  batch: number;
  channels: number;
  groups: number;
  eps: number;
}

export interface GroupNormOptions {
  groups: number;
  eps: number;
  /** [C] each, or neither (no affine). */
  weight?: Tensor;
  bias?: Tensor;
  silu?: boolean;
  /** Normalise x in place instead of into a new tensor. */
  inPlace?: boolean;
}

export interface GroupNorm {
  dispatches: Dispatch[];
  out: Tensor;
  geometry: GroupNormGeometry;
  release(): void;
}

function check(x: Tensor, o: GroupNormOptions): GroupNormGeometry {
  const fail = (why: string) => {
    throw new KernelError(KERNEL, `x ${formatShape(x.shape)}: ${why}`);
  };
  if (x.dtype !== "f32" || x.shape.length < 2) fail("x must be f32 [B, C, ...]");
  const [batch, channels] = x.shape;
  if (!Number.isInteger(o.groups) || o.groups < 1 || channels % o.groups !== 0) {
    fail(`groups ${o.groups} must divide the ${channels} channels`);
  }
  if (!(o.eps > 0)) fail(`eps ${o.eps} must be > 0`);
  if ((o.weight === undefined) !== (o.bias === undefined)) fail("give both weight and bias, or neither");
  for (const t of [o.weight, o.bias]) {
    if (t && (t.dtype !== "f32" || t.shape.join() !== `${channels}`)) {
      fail(`weight and bias must be f32 [C] = [${channels}], got ${formatShape(t.shape)}`);
    }
  }
  return { batch, channels, groups: o.groups, eps: o.eps };
}

export function groupNorm(ctx: GpuContext, x: Tensor, options: GroupNormOptions): GroupNorm {
  const geometry = check(x, options);
  const { batch, channels, groups: g } = geometry;
  const spatial = x.size / (batch * channels);
  const perGroup = (channels / g) * spatial;
  const chunks = groups(perGroup, WG * ITEMS);
  const statsOffset = batch * g * chunks;
  const partial = ctx.pool.tensor([statsOffset + batch * g, 4]);
  const out = options.inPlace ? x : ctx.pool.tensor(x.shape);
  const flags = (options.weight ? 1 : 0) | (options.silu ? 2 : 0);
  const uniform = packUniform([
    ["u32", perGroup],
    ["u32", spatial],
    ["u32", channels],
    ["u32", g],
    ["u32", chunks],
    ["u32", x.size],
    ["f32", options.eps],
    ["u32", flags],
    ["u32", statsOffset],
  ]);
  const inPlace = options.inPlace ?? false;
  const stage = (entry: string) =>
    ctx.kernels.get({
      name: KERNEL,
      entry,
      bindings: BINDINGS,
      constants: { WG, IN_PLACE: Number(inPlace) },
    });
  // Missing read-only bindings (x in place, where it is read through `out`; no affine) hold a stand-in: never
  // a buffer that is also bound writable.
  const standIn = ctx.pool.tensor([4]);
  const buffers = [inPlace ? standIn : x, options.weight ?? standIn, options.bias ?? standIn, partial, out];
  const limit = ctx.gpu.info.limits.maxComputeWorkgroupsPerDimension;
  if (chunks > limit || g > limit || batch * g > limit) {
    throw new KernelError(KERNEL, `x ${formatShape(x.shape)}: too many groups for one dispatch dimension`);
  }
  const dispatches = [
    bindKernel(ctx.gpu, stage("partials"), buffers, [chunks, g, batch], uniform),
    bindKernel(ctx.gpu, stage("finish"), buffers, [batch * g, 1, 1], uniform),
    bindKernel(ctx.gpu, stage("apply"), buffers, flatGrid(ctx.gpu, groups(x.size, WG * ITEMS)), uniform),
  ];
  return {
    dispatches,
    out,
    geometry,
    release() {
      partial.release();
      standIn.release();
      if (!inPlace) out.release();
      disposeDispatches(dispatches);
    },
  };
}
