// Sinusoidal timestep embedding with diffusers' get_timestep_embedding parameters (shaders/timestep_embedding.wgsl).
// Built once per model: the frequency table is made here, each step only rewrites t and encodes the dispatch.
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

const KERNEL = "timestep_embedding";
const WG = 64;
const BINDINGS = ["read", "read", "read_write", "uniform"] as const;

/**
 * All explicit (diffusers' defaults differ between call sites). The embedded DiT: dim 256, flipSinToCos true,
 * downscaleFreqShift 0, scale 1000 (t in [0, 1] scaled to DiT's step range), maxPeriod 10000.
 */
export interface TimestepEmbeddingOptions {
  dim: number;
  /** Output cat[cos, sin] instead of cat[sin, cos]. */
  flipSinToCos: boolean;
  downscaleFreqShift: number;
  /** Multiplies t * frequency (the t multiplier). */
  scale: number;
  maxPeriod: number;
}

export interface TimestepEmbedding {
  dispatches: Dispatch[];
  /** [batch, dim] */
  out: Tensor;
  /** Releases `out` and the frequency table. */
  release(): void;
}

/** t [batch] f32 -> out [batch, dim]. */
export function timestepEmbedding(
  ctx: GpuContext,
  t: Tensor,
  options: TimestepEmbeddingOptions,
): TimestepEmbedding {
  const { dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod } = options;
  if (t.dtype !== "f32" || t.shape.length !== 1) {
    throw new KernelError(KERNEL, `t is ${t.dtype} ${formatShape(t.shape)}, expected f32 [batch]`);
  }
  if (!Number.isInteger(dim) || dim < 2) throw new KernelError(KERNEL, `dim ${dim} must be an integer >= 2`);
  const half = Math.floor(dim / 2);
  if (!(half - downscaleFreqShift > 0)) {
    throw new KernelError(
      KERNEL,
      `downscale_freq_shift ${downscaleFreqShift} must be below half the dim (${half}): it divides by ` +
        `half - shift`,
    );
  }
  if (!(Number.isFinite(maxPeriod) && maxPeriod > 0) || !Number.isFinite(scale)) {
    throw new KernelError(KERNEL, `max_period ${maxPeriod} must be finite and > 0, scale ${scale} finite`);
  }
  const freqs = Float32Array.from(
    { length: half },
    (_, i) => scale * Math.exp((-Math.log(maxPeriod) * i) / (half - downscaleFreqShift)),
  );
  const batch = t.shape[0];
  const freqTable = ctx.pool.upload(freqs, [half]);
  const out = ctx.pool.tensor([batch, dim]);
  const kernel = ctx.kernels.get({ name: KERNEL, bindings: BINDINGS, constants: { WG } });
  const dispatches = [
    bindKernel(
      ctx.gpu,
      kernel,
      [t, freqTable, out],
      [groups(dim, WG), batch, 1],
      packUniform([["u32", dim], ["u32", half], ["u32", flipSinToCos ? 1 : 0]]),
    ),
  ];
  return {
    dispatches,
    out,
    release() {
      freqTable.release();
      out.release();
      disposeDispatches(dispatches);
    },
  };
}
