// One scheduler step as a fused update in place on x (shaders/sampler_step.wgsl): classifier-free guidance,
// the data prediction x0 (clamped when the scheduler clips), and the next sample as a combination of x, x0,
// the previous step's x0, the model output and fresh noise. A request builds one Dispatch per step up front;
// the coefficients come from the scheduler (src/pipeline/schedulers/).
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
const BINDINGS = ["read_write", "read", "read", "read_write", "uniform"] as const;

export interface SamplerStepCoefficients {
  /** x0 = sample*x + model*m, then clamped to [-clip, clip] unless clip is null. */
  x0: { sample: number; model: number; clip: number | null };
  /** x' = sample*x + x0*x0 + previous*x0_prev + model*m + noise*z. */
  next: { sample: number; x0: number; previous: number; model: number; noise: number };
}

export interface SamplerStepOptions extends SamplerStepCoefficients {
  /** Guidance scale g: required exactly when m holds [2B, ...] (conditional batch, then unconditional). */
  guidance?: number;
  /** Standard-normal z of x's shape; required when next.noise != 0. */
  noise?: Tensor;
  /** [B, ...] like x: read as the previous x0, then overwritten with this step's (multistep schedulers). */
  previous?: Tensor;
}

export interface SamplerStep {
  dispatches: Dispatch[];
  /** Releases the uniform; never x, m, noise or previous. */
  release(): void;
}

/** Values per sample of m: checks m is [B or 2B, C_m >= C, ...rest of x]. Returns [stride, guided]. */
function checkModel(x: Tensor, m: Tensor, guidance: number | undefined): [number, boolean] {
  const shapes = `x ${formatShape(x.shape)}, m ${formatShape(m.shape)}`;
  const [batch, channels, ...rest] = x.shape;
  const guided = guidance !== undefined;
  const wanted = guided ? 2 * batch : batch;
  const fits = m.shape.length === x.shape.length && m.shape[0] === wanted && m.shape[1] >= channels &&
    m.shape.slice(2).join() === rest.join();
  if (!fits) {
    const form = `[${guided ? "2B" : "B"} = ${wanted}, >= ${channels} channels, ${rest.join(", ")}]`;
    throw new KernelError(KERNEL, `${shapes}: m must be ${form}${guided ? " (cond, then uncond)" : ""}`);
  }
  return [m.size / wanted, guided];
}

function checkOperands(x: Tensor, m: Tensor, o: SamplerStepOptions): [number, boolean] {
  const shapes = `x ${formatShape(x.shape)}, m ${formatShape(m.shape)}`;
  const values = { ...o.x0, ...Object.fromEntries(Object.entries(o.next).map(([k, v]) => [`next.${k}`, v])) };
  for (
    const [name, value] of Object.entries({ ...values, guidance: o.guidance ?? 0, clip: o.x0.clip ?? 0 })
  ) {
    if (!Number.isFinite(value)) throw new KernelError(KERNEL, `${shapes}: ${name} ${value} must be finite`);
  }
  for (const [name, t] of [["x", x], ["m", m], ["noise", o.noise], ["previous", o.previous]] as const) {
    if (t && t.dtype !== "f32") {
      throw new KernelError(KERNEL, `${shapes}: ${name} ${formatShape(t.shape)} is ${t.dtype}, expected f32`);
    }
  }
  if (x.shape.length < 2) throw new KernelError(KERNEL, `${shapes}: x must be [B, C, ...]`);
  const model = checkModel(x, m, o.guidance);
  if (o.next.noise !== 0 && !o.noise) throw new KernelError(KERNEL, `${shapes}: next.noise != 0 needs noise`);
  if (o.next.previous !== 0 && !o.previous) {
    throw new KernelError(KERNEL, `${shapes}: next.previous != 0 needs the previous x0`);
  }
  for (const [name, t] of [["noise", o.noise], ["previous", o.previous]] as const) {
    if (t && t.shape.join() !== x.shape.join()) {
      throw new KernelError(KERNEL, `${shapes}: ${name} ${formatShape(t.shape)} must have the shape of x`);
    }
  }
  for (const [name, t] of [["m", m], ["noise", o.noise], ["previous", o.previous]] as const) {
    if (t && t.buffer === x.buffer) throw new KernelError(KERNEL, `${shapes}: ${name} shares x's buffer`);
  }
  return model;
}

/** The step's Dispatch, coefficients fixed in its uniform. Checks everything before allocating. */
export function samplerStep(ctx: GpuContext, x: Tensor, m: Tensor, options: SamplerStepOptions): SamplerStep {
  const [stride, guided] = checkOperands(x, m, options);
  const perSample = x.size / x.shape[0];
  // vec4 Elems need every count, stride and offset to be a multiple of 4.
  const aligned = x.size % 4 === 0 && perSample % 4 === 0 && stride % 4 === 0;
  const { source, width } = elementwiseSource(KERNEL, aligned ? x.size : 1);
  const store = options.previous !== undefined;
  const kernel = ctx.kernels.get({
    name: KERNEL,
    source,
    bindings: BINDINGS,
    constants: { WG, ITEMS, STORE_X0: Number(store) },
  });
  const count = x.size / width;
  const { x0, next } = options;
  const uniform = packUniform([
    ["u32", count],
    ["u32", perSample / width],
    ["u32", stride / width],
    ["u32", (x.shape[0] * stride) / width],
    ["u32", Number(guided)],
    ["f32", options.guidance ?? 0],
    ["f32", x0.sample],
    ["f32", x0.model],
    ["f32", x0.clip ?? -1],
    ["f32", next.sample],
    ["f32", next.x0],
    ["f32", next.previous],
    ["f32", next.model],
    ["f32", next.noise],
  ]);
  // Unused bindings hold stand-ins: m for z (read-only), a tiny tensor for the writable prev.
  const standIn = store ? undefined : ctx.pool.tensor([4]);
  const buffers = [x, m, options.noise ?? m, options.previous ?? standIn!];
  const dispatches = [
    bindKernel(ctx.gpu, kernel, buffers, flatGrid(ctx.gpu, groups(count, WG * ITEMS)), uniform),
  ];
  return {
    dispatches,
    release() {
      standIn?.release();
      disposeDispatches(dispatches);
    },
  };
}
