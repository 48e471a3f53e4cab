// The elementwise ops of adaLN-Zero (shaders/modulate.wgsl): modulate, gated residual and SiLU.
// mod [B, k*C] is the adaLN linear's output for B samples; ops name its chunks by index, e.g. DiT / FLUX
// double blocks: shift_msa 0, scale_msa 1, gate_msa 2, shift_mlp 3, scale_mlp 4, gate_mlp 5.
import type { GpuContext } from "../gpu/context.ts";
import {
  bindKernel,
  type Dispatch,
  disposeDispatches,
  KernelError,
  packUniform,
  type UniformField,
} from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { flatGrid } from "./grid.ts";

const SHADER = "modulate";
const WG = 256;
/** Elements per invocation, WG apart. */
const ITEMS = 4;
const BINDINGS = ["read", "read", "read_write", "uniform"] as const;

/** What an elementwise op hands back; `out` is x itself when the op works in place. */
export interface ElementwiseOp {
  dispatches: Dispatch[];
  out: Tensor;
  /** Releases what the op allocated (out unless in place, uniforms, stand-ins); never x. */
  release(): void;
}

export interface ModulationLayout {
  batch: number;
  tokens: number;
  channels: number;
  /** k: chunks of C values per sample in mod. */
  chunks: number;
}

/**
 * Checks x [B, T, C] and mod [B, k*C] (both f32) and that every named chunk index lies in 0..k-1.
 * Shared with the fused LayerNorm + modulate of ops/norm.ts.
 */
export function checkModulation(
  kernel: string,
  x: Tensor,
  mod: Tensor,
  chunkIndices: Record<string, number>,
): ModulationLayout {
  if (x.dtype !== "f32" || mod.dtype !== "f32") {
    throw new KernelError(kernel, `x is ${x.dtype} and mod is ${mod.dtype}, both must be f32`);
  }
  if (x.shape.length !== 3) throw new KernelError(kernel, `x ${formatShape(x.shape)} must be [B, T, C]`);
  const [batch, tokens, channels] = x.shape;
  if (mod.shape.length !== 2 || mod.shape[0] !== batch || mod.shape[1] % channels !== 0) {
    throw new KernelError(
      kernel,
      `mod ${formatShape(mod.shape)} must be [B, k*C] = [${batch}, k*${channels}] for x ${
        formatShape(x.shape)
      }`,
    );
  }
  const chunks = mod.shape[1] / channels;
  for (const [name, index] of Object.entries(chunkIndices)) {
    if (!Number.isInteger(index) || index < 0 || index >= chunks) {
      throw new KernelError(
        kernel,
        `${name} chunk ${index} is outside 0..${chunks - 1}: mod ${formatShape(mod.shape)} holds ` +
          `k = ${chunks} chunks of C = ${channels}`,
      );
    }
  }
  return { batch, tokens, channels, chunks };
}

function checkF32(kernel: string, what: string, t: Tensor): void {
  if (t.dtype !== "f32") {
    throw new KernelError(kernel, `${what} ${formatShape(t.shape)} is ${t.dtype}, expected f32`);
  }
}

interface Launch {
  entry: string;
  inPlace: boolean;
  src: Tensor;
  modulation: Tensor;
  dst: Tensor;
  /** Every field of the shader's Params after `count` (the uniform must cover the whole struct). */
  params: readonly UniformField[];
}

function launch(ctx: GpuContext, spec: Launch): Dispatch {
  const kernel = ctx.kernels.get({
    name: SHADER,
    entry: spec.entry,
    bindings: BINDINGS,
    constants: { WG, ITEMS, IN_PLACE: Number(spec.inPlace) },
  });
  const count = spec.dst.size;
  return bindKernel(
    ctx.gpu,
    kernel,
    [spec.src, spec.modulation, spec.dst],
    flatGrid(ctx.gpu, Math.ceil(count / (WG * ITEMS))),
    packUniform([["u32", count], ...spec.params]),
  );
}

function modulationParams(layout: ModulationLayout, first: number, second: number): UniformField[] {
  const { tokens, channels, chunks } = layout;
  return [
    ["u32", channels],
    ["u32", tokens * channels],
    ["u32", chunks * channels],
    ["u32", first * channels],
    ["u32", second * channels],
  ];
}

/** SiLU reads no chunk; a one-sample, one-channel layout keeps its divisions defined. */
const NO_MODULATION: ModulationLayout = { batch: 1, tokens: 1, channels: 1, chunks: 1 };

function finish(dispatches: Dispatch[], out: Tensor, owned: Tensor[]): ElementwiseOp {
  return {
    dispatches,
    out,
    release() {
      for (const t of owned) t.release();
      disposeDispatches(dispatches);
    },
  };
}

export interface ModulateOptions {
  /** Chunk indices of shift and scale in mod. */
  shift: number;
  scale: number;
  /** Overwrite x instead of allocating out (default false). */
  inPlace?: boolean;
}

/** out = x * (1 + scale[s]) + shift[s] for x [B, T, C], shift and scale chunks of mod [B, k*C]. */
export function modulate(ctx: GpuContext, x: Tensor, mod: Tensor, options: ModulateOptions): ElementwiseOp {
  const layout = checkModulation("modulate", x, mod, { shift: options.shift, scale: options.scale });
  const inPlace = options.inPlace ?? false;
  const out = inPlace ? x : ctx.pool.tensor(x.shape);
  const dispatch = launch(ctx, {
    entry: "modulate",
    inPlace,
    src: inPlace ? mod : x, // in place, mod stands in for the unread src
    modulation: mod,
    dst: out,
    params: modulationParams(layout, options.shift, options.scale),
  });
  return finish([dispatch], out, inPlace ? [] : [out]);
}

/** x = x + gate[s] * y in place on x [B, T, C]; y [B, T, C]; gate a chunk of mod [B, k*C]. */
export function gatedResidual(
  ctx: GpuContext,
  x: Tensor,
  y: Tensor,
  mod: Tensor,
  options: { gate: number },
): ElementwiseOp {
  const kernel = "gated_residual";
  const layout = checkModulation(kernel, x, mod, { gate: options.gate });
  checkF32(kernel, "y", y);
  if (y.shape.join() !== x.shape.join()) {
    throw new KernelError(
      kernel,
      `y ${formatShape(y.shape)} must have the shape of x ${formatShape(x.shape)}`,
    );
  }
  if (y.buffer === x.buffer) {
    throw new KernelError(kernel, "y shares x's buffer: x is bound read_write, y read-only, in one dispatch");
  }
  const dispatch = launch(ctx, {
    entry: kernel,
    inPlace: false,
    src: y,
    modulation: mod,
    dst: x,
    params: modulationParams(layout, options.gate, 0),
  });
  return finish([dispatch], x, []);
}

/** SiLU(x) = x * sigmoid(x) over a tensor of any shape, into a new tensor or in place. */
export function silu(ctx: GpuContext, x: Tensor, options: { inPlace?: boolean } = {}): ElementwiseOp {
  checkF32("silu", "x", x);
  const inPlace = options.inPlace ?? false;
  const out = inPlace ? x : ctx.pool.tensor(x.shape);
  // In place no read-only binding may hold x, so both unread bindings get a one-element stand-in.
  const standIn = inPlace ? ctx.pool.tensor([1]) : x;
  const dispatch = launch(ctx, {
    entry: "silu_elementwise",
    inPlace,
    src: standIn,
    modulation: standIn,
    dst: out,
    params: modulationParams(NO_MODULATION, 0, 0),
  });
  return finish([dispatch], out, inPlace ? [standIn] : [out]);
}
