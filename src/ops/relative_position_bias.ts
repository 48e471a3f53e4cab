// T5's relative position bias, gathered on the GPU from a layer's table into the [heads, L, L] score bias that
// flashAttention adds (shaders/relative_position_bias.wgsl), with the padding keys of an attention mask
// masked in the same pass. On the GPU because UMT5 has a table in every layer: one [heads, L, L] tensor is
// refilled before each layer's attention (Wan's umT5-XXL at 512 tokens: 64 MiB, against 1.5 GiB for 24 kept
// ones), and the mask changes per prompt without a host pass over L^2 elements.
import type { GpuContext } from "../gpu/context.ts";
import { bindKernel, type Dispatch, groups, KernelError, shaderSource } from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { uniformLayout } from "../gpu/uniform_layout.ts";
import { isWeightDType, weightBinding } from "./stored_weights.ts";

const KERNEL = "relative_position_bias";
const WG = 64;
const BINDINGS = ["read", "read", "read", "read_write", "uniform"] as const;

const PARAMS = uniformLayout("Params", [
  { name: "length", type: "u32", note: "L, query and key tokens" },
  { name: "heads", type: "u32" },
  { name: "buckets", type: "u32", note: "table rows" },
]);

/**
 * table [buckets, heads] (f32, f16 or bf16, as stored), bucket u32 [2L - 1] (the bucket of key - query
 * offset -(L - 1) + n at n), keys u32 [1] (the unmasked keys, 1..L; written by the caller), out f32
 * [heads, L, L]: out[h, i, j] = table[bucket[j - i + L - 1], h] for j < keys, a masked score after. The caller
 * owns every tensor; dispose the Dispatch's uniform with disposeDispatches.
 */
export function relativePositionBias(
  ctx: GpuContext,
  table: Tensor,
  bucket: Tensor,
  keys: Tensor,
  out: Tensor,
): Dispatch {
  const shapes = `table ${table.dtype} ${formatShape(table.shape)}, bucket ${bucket.dtype} ` +
    `${formatShape(bucket.shape)}, keys ${keys.dtype} ${formatShape(keys.shape)}, out ${out.dtype} ` +
    formatShape(out.shape);
  const fail = (message: string) => new KernelError(KERNEL, `${shapes}: ${message}`);
  if (!isWeightDType(table.dtype) || table.shape.length !== 2) {
    throw fail("table must be f32, f16 or bf16 [buckets, heads]");
  }
  const [buckets, heads] = table.shape;
  const offsets = bucket.shape[0];
  if (bucket.dtype !== "u32" || bucket.shape.length !== 1 || offsets % 2 !== 1) {
    throw fail("bucket must be u32 [2L - 1], one bucket per key - query offset");
  }
  const length = (offsets + 1) / 2;
  if (keys.dtype !== "u32" || keys.shape.join() !== "1") throw fail("keys must be u32 [1]");
  if (out.dtype !== "f32" || out.shape.join() !== [heads, length, length].join()) {
    throw fail(`out must be f32 [${heads}, ${length}, ${length}] (heads, L, L)`);
  }
  const kernel = ctx.kernels.get({
    name: KERNEL,
    source: [weightBinding("table", 0, table.dtype, false), PARAMS.wgsl, shaderSource(KERNEL)].join("\n"),
    bindings: BINDINGS,
    constants: { WG },
  });
  return bindKernel(
    ctx.gpu,
    kernel,
    [table, bucket, keys, out],
    [groups(length, WG), length, heads],
    PARAMS.pack({ length, heads, buckets }),
  );
}
