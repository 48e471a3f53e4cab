// One scheduler step as a fused update in place on x (shaders/sampler_step.wgsl): classifier-free guidance,
// the data prediction x0 (clamped when the scheduler clips), an optional corrector that replaces the sample
// (UniPC), and the next sample as a combination of the sample, x0, the x0s of earlier steps, the model output
// and fresh noise. A request builds one Dispatch per step up front; the coefficients come from the scheduler
// (src/pipeline/schedulers/).
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
const BINDINGS = ["read_write", "read", "read", "read_write", "read_write", "uniform"] as const;
/** Earlier x0s one step may weigh (the uniform's vec4s). */
const MAX_HISTORY = 4;
const NONE = 0xffffffff;

export interface SamplerStepCoefficients {
  /** x0 = sample*x + model*m, then clamped to [-clip, clip] unless clip is null. */
  x0: { sample: number; model: number; clip: number | null };
  /**
   * s = last*s_prev + x0*x0 + sum_k history[k]*x0_k, where s_prev is the previous step's s and x0_k the x0 of
   * k + 1 steps before (UniPC's corrector; x0 is still the uncorrected sample's). Absent: s = x.
   */
  corrector?: { last: number; x0: number; history: readonly number[] };
  /** x' = sample*s + x0*x0 + sum_k history[k]*x0_k + model*m + noise*z. */
  next: { sample: number; x0: number; history: readonly number[]; model: number; noise: number };
}

/** The x0s of earlier steps: slot j % slots of ring [slots, ...x.shape] holds step j's x0. */
export interface SamplerHistory {
  ring: Tensor;
  /** This step's index in the run: it reads steps step-1 .. step-slots, then writes its own x0. */
  step: number;
}

export interface SamplerStepOptions extends SamplerStepCoefficients {
  /** Guidance scale g: required exactly when m holds [2B, ...] (conditional batch, then unconditional). */
  guidance?: number;
  /** Standard-normal z of x's shape; required when next.noise != 0. */
  noise?: Tensor;
  /** Required when a history weight is nonzero; this step's x0 is always kept in it. */
  history?: SamplerHistory;
  /** [B, ...] like x: read as the previous step's s by the corrector (required then), overwritten with this s. */
  last?: Tensor;
}

export interface SamplerStep {
  dispatches: Dispatch[];
  /** Releases the uniform and stand-ins; never x, m, noise, the ring or last. */
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

/** Every coefficient by name, as errors name them (x0.sample, corrector.history[0], next.noise ...). */
export function namedCoefficients(o: SamplerStepCoefficients): [string, number][] {
  const named = (prefix: string, values: Record<string, number | readonly number[]>) =>
    Object.entries(values).flatMap(([k, v]): [string, number][] =>
      typeof v === "number" ? [[`${prefix}.${k}`, v]] : v.map((w, i) => [`${prefix}.${k}[${i}]`, w])
    );
  return [
    ...named("x0", { sample: o.x0.sample, model: o.x0.model, clip: o.x0.clip ?? 0 }),
    ...(o.corrector ? named("corrector", o.corrector) : []),
    ...named("next", o.next),
  ];
}

function checkState(shapes: string, x: Tensor, o: SamplerStepOptions): void {
  const weights = [...o.next.history, ...(o.corrector?.history ?? [])];
  const depth = Math.max(o.next.history.length, o.corrector?.history.length ?? 0);
  if (depth > MAX_HISTORY) {
    throw new KernelError(KERNEL, `${shapes}: ${depth} history weights; at most ${MAX_HISTORY}`);
  }
  const ring = o.history?.ring;
  if (!ring && weights.some((w) => w !== 0)) {
    throw new KernelError(KERNEL, `${shapes}: history weights != 0 need the history ring`);
  }
  if (ring) {
    const [slots, ...rest] = ring.shape;
    if (rest.join() !== x.shape.join() || !(slots >= 1 && slots <= MAX_HISTORY) || slots < depth) {
      throw new KernelError(
        KERNEL,
        `${shapes}: history ring ${formatShape(ring.shape)} must be [slots, ${x.shape.join(", ")}] with ` +
          `${Math.max(depth, 1)} <= slots <= ${MAX_HISTORY}`,
      );
    }
    if (!(Number.isInteger(o.history!.step) && o.history!.step >= 0)) {
      throw new KernelError(KERNEL, `${shapes}: history step ${o.history!.step} must be an integer >= 0`);
    }
  }
  if (o.corrector && !o.last) throw new KernelError(KERNEL, `${shapes}: a corrector needs last`);
  if (o.last && o.last.shape.join() !== x.shape.join()) {
    throw new KernelError(KERNEL, `${shapes}: last ${formatShape(o.last.shape)} must have the shape of x`);
  }
}

function checkOperands(x: Tensor, m: Tensor, o: SamplerStepOptions): [number, boolean] {
  const shapes = `x ${formatShape(x.shape)}, m ${formatShape(m.shape)}`;
  for (const [name, value] of [...namedCoefficients(o), ["guidance", o.guidance ?? 0] as [string, number]]) {
    if (!Number.isFinite(value)) throw new KernelError(KERNEL, `${shapes}: ${name} ${value} must be finite`);
  }
  const tensors = { x, m, noise: o.noise, ring: o.history?.ring, last: o.last };
  for (const [name, t] of Object.entries(tensors)) {
    if (t && t.dtype !== "f32") {
      throw new KernelError(KERNEL, `${shapes}: ${name} ${formatShape(t.shape)} is ${t.dtype}, expected f32`);
    }
  }
  if (x.shape.length < 2) throw new KernelError(KERNEL, `${shapes}: x must be [B, C, ...]`);
  const model = checkModel(x, m, o.guidance);
  if (o.next.noise !== 0 && !o.noise) throw new KernelError(KERNEL, `${shapes}: next.noise != 0 needs noise`);
  if (o.noise && o.noise.shape.join() !== x.shape.join()) {
    throw new KernelError(KERNEL, `${shapes}: noise ${formatShape(o.noise.shape)} must have the shape of x`);
  }
  checkState(shapes, x, o);
  // The writable ring and last may alias nothing; m and noise only each other (both read-only).
  const bound = Object.entries(tensors).filter((entry): entry is [string, Tensor] => entry[1] !== undefined);
  for (const [i, [name, t]] of bound.entries()) {
    const other = bound.slice(0, i).find(([n, u]) =>
      u.buffer === t.buffer && !(n === "m" && name === "noise")
    );
    if (other) throw new KernelError(KERNEL, `${shapes}: ${name} shares ${other[0]}'s buffer`);
  }
  return model;
}

/** Four of `values` (zeros after), for a vec4 of the uniform. */
function vec4(type: "u32" | "f32", values: readonly number[]): ["u32" | "f32", number][] {
  return Array.from({ length: 4 }, (_, k) => [type, values[k] ?? 0]);
}

/** The step's Dispatch, coefficients fixed in its uniform. Checks everything before allocating. */
export function samplerStep(ctx: GpuContext, x: Tensor, m: Tensor, options: SamplerStepOptions): SamplerStep {
  const [stride, guided] = checkOperands(x, m, options);
  const perSample = x.size / x.shape[0];
  // vec4 Elems need every count, stride and offset to be a multiple of 4.
  const aligned = x.size % 4 === 0 && perSample % 4 === 0 && stride % 4 === 0;
  const { source, width } = elementwiseSource(KERNEL, aligned ? x.size : 1);
  const kernel = ctx.kernels.get({ name: KERNEL, source, bindings: BINDINGS, constants: { WG, ITEMS } });
  const count = x.size / width;
  const { x0, corrector, next, history } = options;
  const slots = history?.ring.shape[0] ?? 1;
  const slotAt = (step: number) => (((step % slots) + slots) % slots) * count;
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
    ["f32", next.model],
    ["f32", next.noise],
    ["u32", Number(corrector !== undefined)],
    ["f32", corrector?.last ?? 0],
    ["f32", corrector?.x0 ?? 0],
    ...vec4("u32", history ? Array.from({ length: slots }, (_, k) => slotAt(history.step - 1 - k)) : []),
    ...vec4("f32", next.history),
    ...vec4("f32", corrector?.history ?? []),
    ["u32", history ? slotAt(history.step) : NONE],
    ["u32", Number(options.last !== undefined)],
  ]);
  // Unused bindings hold stand-ins: m for z (read-only), tiny tensors for the writable last and ring.
  const standIns = [options.last, history?.ring].map((t) => t ? undefined : ctx.pool.tensor([4]));
  const buffers = [x, m, options.noise ?? m, options.last ?? standIns[0]!, history?.ring ?? standIns[1]!];
  const dispatches = [
    bindKernel(ctx.gpu, kernel, buffers, flatGrid(ctx.gpu, groups(count, WG * ITEMS)), uniform),
  ];
  return {
    dispatches,
    release() {
      for (const t of standIns) t?.release();
      disposeDispatches(dispatches);
    },
  };
}
