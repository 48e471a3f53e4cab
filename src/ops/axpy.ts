// out = beta * y + alpha * x (+ a constant) (shaders/axpy.wgsl, BLAS axpby): a single cheap dispatch that cache strategies
// run every step, for residual = output - input (alpha -1) and hidden = hidden + residual (alpha 1). The
// coefficients live in the dispatch's uniform and can be rewritten between submits, so TaylorSeer's
// step-dependent weights reuse one pipeline and bind group.
import type { GpuContext } from "../gpu/context.ts";
import {
  bindKernel,
  disposeDispatches,
  groups,
  KernelError,
  packUniform,
  shaderSource,
} from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { flatGrid } from "./grid.ts";
import type { ElementwiseOp } from "./modulate.ts";

const KERNEL = "axpy";
const WG = 256;
/** Elems per invocation, WG apart. */
const ITEMS = 4;
const BINDINGS = ["read", "read", "read_write", "uniform"] as const;

export interface ElementwiseSource {
  /** Shader text with `alias Elem` defined. */
  source: string;
  /** f32 values per Elem: 4 when the element count allows vec4 loads, else 1. */
  width: 1 | 4;
}

/**
 * The text of an elementwise shader whose arrays hold `Elem`: vec4<f32> when `size` (every bound tensor's
 * element count, and every offset into them) is a multiple of 4, f32 otherwise. Shared with sampler_step.
 */
export function elementwiseSource(name: string, size: number): ElementwiseSource {
  const width = size % 4 === 0 ? 4 : 1;
  const alias = width === 4 ? "alias Elem = vec4<f32>;" : "alias Elem = f32;";
  return { source: `${shaderSource(name)}\n${alias}\n`, width };
}

export interface AxpyOptions {
  alpha: number;
  /** Weight of y (default 1). */
  beta?: number;
  /** Added to every element (default 0): FLUX's latents / scaling_factor + shift_factor. */
  constant?: number;
  /** Write into this tensor (shape of y) instead of a new one. */
  out?: Tensor;
  /** y = y + alpha * x, y bound once read_write (default false). */
  inPlace?: boolean;
}

function checkOperands(x: Tensor, y: Tensor, options: AxpyOptions): void {
  const shapes = `x ${formatShape(x.shape)}, y ${formatShape(y.shape)}`;
  checkCoefficients(shapes, options.alpha, options.beta ?? 1);
  const out = options.out;
  for (const [name, t] of [["x", x], ["y", y], ["out", out]] as const) {
    if (t && t.dtype !== "f32") {
      throw new KernelError(KERNEL, `${shapes}: ${name} ${formatShape(t.shape)} is ${t.dtype}, expected f32`);
    }
  }
  if (x.shape.join() !== y.shape.join()) throw new KernelError(KERNEL, `${shapes}: shapes must be equal`);
  if (out && options.inPlace) {
    throw new KernelError(KERNEL, `${shapes}: give out or inPlace, not both (in place, y is the output)`);
  }
  if (options.inPlace && x.buffer === y.buffer) {
    throw new KernelError(KERNEL, `${shapes}: in place, x shares y's buffer, which is bound read_write`);
  }
  if (!out) return;
  if (out.shape.join() !== y.shape.join()) {
    throw new KernelError(KERNEL, `${shapes}: out ${formatShape(out.shape)} must have the shape of y`);
  }
  if (out.buffer === x.buffer || out.buffer === y.buffer) {
    throw new KernelError(
      KERNEL,
      `${shapes}: out shares the buffer of ${out.buffer === x.buffer ? "x" : "y"}; ` +
        "to write into y use inPlace: true",
    );
  }
}

function checkCoefficients(shapes: string, alpha: number, beta: number): void {
  for (const [name, value] of [["alpha", alpha], ["beta", beta]] as const) {
    if (!Number.isFinite(value)) {
      throw new KernelError(KERNEL, `${shapes}: ${name} ${value} must be a finite number`);
    }
  }
}

export interface AxpyOp extends ElementwiseOp {
  /**
   * New coefficients for the next submit that runs this op (a queue write: it applies to every submit after
   * this call, so each op must be encoded once per submit at most).
   */
  setCoefficients(alpha: number, beta?: number): void;
}

const uniformOf = (count: number, alpha: number, beta: number, constant: number) =>
  packUniform([["u32", count], ["f32", alpha], ["f32", beta], ["f32", constant]]);

/**
 * to = from as a dispatch (axpy with beta 0): unlike a buffer copy it can be made conditional (indirect), as
 * the paths a GPU-side cache decision chooses between must be.
 */
export function copyByDispatch(ctx: GpuContext, from: Tensor, to: Tensor): AxpyOp {
  return axpy(ctx, from, from, { alpha: 1, beta: 0, out: to });
}

/**
 * out = beta * y + alpha * x elementwise over equal-shape f32 tensors: into a new tensor, into options.out, or into
 * y (inPlace). Checks everything before allocating.
 */
export function axpy(ctx: GpuContext, x: Tensor, y: Tensor, options: AxpyOptions): AxpyOp {
  checkOperands(x, y, options);
  const inPlace = options.inPlace ?? false;
  const { source, width } = elementwiseSource(KERNEL, y.size);
  const kernel = ctx.kernels.get({
    name: KERNEL,
    source,
    bindings: BINDINGS,
    constants: { WG, ITEMS, IN_PLACE: Number(inPlace) },
  });
  const out = inPlace ? y : options.out ?? ctx.pool.tensor(y.shape);
  const count = y.size / width;
  const dispatches = [
    bindKernel(
      ctx.gpu,
      kernel,
      [x, inPlace ? x : y, out], // in place, x stands in for the unread y binding
      flatGrid(ctx.gpu, groups(count, WG * ITEMS)),
      uniformOf(count, options.alpha, options.beta ?? 1, options.constant ?? 0),
    ),
  ];
  const uniform = dispatches[0].uniform!;
  const owned = out !== y && out !== options.out;
  return {
    dispatches,
    out,
    setCoefficients(alpha: number, beta = 1) {
      checkCoefficients(`x ${formatShape(x.shape)}, y ${formatShape(y.shape)}`, alpha, beta);
      ctx.gpu.device.queue.writeBuffer(uniform, 0, uniformOf(count, alpha, beta, options.constant ?? 0));
    },
    release() {
      if (owned) out.release();
      disposeDispatches(dispatches);
    },
  };
}
