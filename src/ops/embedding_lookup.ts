// Class-label embedding (DiT y_embedder.embedding_table) as a row gather (shaders/embedding_lookup.wgsl).
import type { GpuContext } from "../gpu/context.ts";
import { bindKernel, type Dispatch, groups, KernelError, packUniform, shaderSource } from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { isWeightDType, weightBinding } from "./stored_weights.ts";

const KERNEL = "embedding_lookup";
const WG = 64;
const BINDINGS = ["read", "read", "read_write", "uniform"] as const;

export interface EmbeddingLookupOptions {
  /** Add the rows onto `out` (c = t_emb + y_emb in place) instead of overwriting it. */
  accumulate: boolean;
}

/**
 * The one way labels reach the GPU: every label must be an integer in 0..classes-1 (the null class used for
 * classifier-free guidance is the last row, so it is in range too). Returns a u32 tensor [batch].
 */
export function uploadLabels(ctx: GpuContext, labels: ArrayLike<number>, classes: number): Tensor {
  if (labels.length === 0) throw new KernelError(KERNEL, "labels is empty: need [batch] with batch >= 1");
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    if (!Number.isInteger(label) || label < 0 || label >= classes) {
      throw new KernelError(
        KERNEL,
        `labels[${i}] = ${label} is outside the table's classes 0..${
          classes - 1
        } (labels [${labels.length}])`,
      );
    }
  }
  return ctx.pool.upload(Uint32Array.from(labels), [labels.length]);
}

/**
 * table [classes, channels] (f32, f16 or bf16, as stored), labels [batch] u32, out [batch, channels] f32: out = table[labels]
 * (or out += table[labels]). The caller owns `out`; dispose the Dispatch's uniform with disposeDispatches.
 */
export function embeddingLookup(
  ctx: GpuContext,
  table: Tensor,
  labels: Tensor,
  out: Tensor,
  options: EmbeddingLookupOptions,
): Dispatch {
  const shapes = `table ${table.dtype} ${formatShape(table.shape)}, labels ${labels.dtype} ` +
    `${formatShape(labels.shape)}, out ${out.dtype} ${formatShape(out.shape)}`;
  if (!isWeightDType(table.dtype) || table.shape.length !== 2) {
    throw new KernelError(KERNEL, `${shapes}: table must be f32, f16 or bf16 [classes, channels]`);
  }
  const [classes, channels] = table.shape;
  if (labels.dtype !== "u32" || labels.shape.length !== 1) {
    throw new KernelError(KERNEL, `${shapes}: labels must be u32 [batch] (see uploadLabels)`);
  }
  const batch = labels.shape[0];
  if (out.dtype !== "f32" || out.shape.join() !== [batch, channels].join()) {
    throw new KernelError(KERNEL, `${shapes}: out must be f32 [${batch}, ${channels}] (batch, channels)`);
  }
  const kernel = ctx.kernels.get({
    name: KERNEL,
    source: `${weightBinding("table", 0, table.dtype, false)}\n${shaderSource(KERNEL)}`,
    bindings: BINDINGS,
    constants: { WG, ACCUMULATE: options.accumulate ? 1 : 0 },
  });
  return bindKernel(
    ctx.gpu,
    kernel,
    [table, labels, out],
    [groups(channels, WG), batch, 1],
    packUniform([["u32", channels], ["u32", classes]]),
  );
}
