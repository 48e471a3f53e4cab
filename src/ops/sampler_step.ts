// The fused sampler update x = a*x + b*vg + c*z in place (shaders/sampler_step.wgsl), with classifier-free
// guidance folded in. Every sampler of src/pipeline/sampler.ts is this update with per-step (a, b, c); a
// request builds one Dispatch per step once and encodes it after the step's velocity prediction.
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

const KERNEL = "sampler_step";
const WG = 256;
/** Elems per invocation, WG apart. */
const ITEMS = 4;
const BINDINGS = ["read_write", "read", "read", "uniform"] as const;

export interface SamplerUpdateOptions {
  a: number;
  b: number;
  /** Weight of `noise`; default 0. */
  c?: number;
  /** Guidance scale g: required exactly when v is [2B, ...] (conditional batch, then unconditional). */
  guidance?: number;
  /** Standard-normal z of x's shape; required when c != 0. */
  noise?: Tensor;
}

export interface SamplerUpdate {
  dispatches: Dispatch[];
  /** Releases the uniform; never x, v or noise. */
  release(): void;
}

/** Returns whether v is the guided [2B, ...] pair; throws unless v's shape fits x [B, ...]. */
function checkVelocity(x: Tensor, v: Tensor, guidance: number | undefined): boolean {
  const shapes = `x ${formatShape(x.shape)}, v ${formatShape(v.shape)}`;
  const [batch, ...rest] = x.shape;
  const sameRest = v.shape.length === x.shape.length && v.shape.slice(1).join() === rest.join();
  const guided = sameRest && v.shape[0] === 2 * batch;
  const pair = formatShape([2 * batch, ...rest]);
  if (!sameRest || (v.shape[0] !== batch && !guided)) {
    throw new KernelError(
      KERNEL,
      `${shapes}: v must be [B, ...] = ${formatShape(x.shape)} or [2B, ...] = ${pair}`,
    );
  }
  if (guided && guidance === undefined) {
    throw new KernelError(
      KERNEL,
      `${shapes}: v holds cond and uncond batches [2B, ...], guidance g is required`,
    );
  }
  if (!guided && guidance !== undefined) {
    throw new KernelError(
      KERNEL,
      `${shapes}: guidance ${guidance} needs v [2B, ...] = ${pair} ` +
        "(cond, then uncond); v [B, ...] is used as is",
    );
  }
  return guided;
}

function checkOperands(x: Tensor, v: Tensor, options: SamplerUpdateOptions): boolean {
  const shapes = `x ${formatShape(x.shape)}, v ${formatShape(v.shape)}`;
  const { a, b, c = 0, guidance, noise } = options;
  const coefficients = { a, b, c, guidance: guidance ?? 0 };
  for (const [name, value] of Object.entries(coefficients)) {
    if (!Number.isFinite(value)) throw new KernelError(KERNEL, `${shapes}: ${name} ${value} must be finite`);
  }
  for (const [name, t] of [["x", x], ["v", v], ["noise", noise]] as const) {
    if (t && t.dtype !== "f32") {
      throw new KernelError(KERNEL, `${shapes}: ${name} ${formatShape(t.shape)} is ${t.dtype}, expected f32`);
    }
  }
  if (x.shape.length < 1) throw new KernelError(KERNEL, `${shapes}: x must be [B, ...]`);
  const guided = checkVelocity(x, v, guidance);
  if (c !== 0 && !noise) throw new KernelError(KERNEL, `${shapes}: c ${c} != 0 needs options.noise`);
  if (noise && noise.shape.join() !== x.shape.join()) {
    throw new KernelError(KERNEL, `${shapes}: noise ${formatShape(noise.shape)} must have the shape of x`);
  }
  for (const [name, t] of [["v", v], ["noise", noise]] as const) {
    if (t && t.buffer === x.buffer) {
      throw new KernelError(KERNEL, `${shapes}: ${name} shares x's buffer, which is updated in place`);
    }
  }
  return guided;
}

/**
 * x = a*x + b*vg + c*z in place on x [B, ...]; vg = v for v [B, ...], or v_u + g*(v_c - v_u) for
 * v [2B, ...] (cond first). The coefficients are fixed in the returned Dispatch. Checks before allocating.
 */
export function samplerUpdate(
  ctx: GpuContext,
  x: Tensor,
  v: Tensor,
  options: SamplerUpdateOptions,
): SamplerUpdate {
  const guided = checkOperands(x, v, options);
  const { source, width } = elementwiseSource(KERNEL, x.size);
  const kernel = ctx.kernels.get({ name: KERNEL, source, bindings: BINDINGS, constants: { WG, ITEMS } });
  const count = x.size / width;
  const dispatches = [
    bindKernel(
      ctx.gpu,
      kernel,
      [x, v, options.noise ?? v], // without noise, v stands in for the unread z
      flatGrid(ctx.gpu, groups(count, WG * ITEMS)),
      packUniform([
        ["u32", count],
        ["u32", Number(guided)],
        ["f32", options.a],
        ["f32", options.b],
        ["f32", options.c ?? 0],
        ["f32", options.guidance ?? 0],
      ]),
    ),
  ];
  return { dispatches, release: () => disposeDispatches(dispatches) };
}
