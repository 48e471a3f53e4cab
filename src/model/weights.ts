// Strict loading of a checkpoint into GPU tensors: every expected key present with its shape, no unexpected
// keys, finite values. All problems are listed in one error so a bad export is fixed in one round.
// Matrices (`*.weight` of two or more dimensions: linear, conv and embedding weights) stay in their stored
// dtype on the GPU, since the kernels that read them widen F16/BF16 themselves; vectors (biases, norm
// scales) and other tensors are widened to f32 on upload (their bytes are a rounding error of a model's).
// Before anything is allocated the plan is checked against the adapter's per-binding limit.
import type { GpuContext } from "../gpu/context.ts";
import { type DType, elementCount, type Tensor } from "../gpu/tensor.ts";
import { type Checkpoint, openCheckpoint } from "./checkpoint.ts";
import {
  decodeToFloat32,
  forEachTensorBytes,
  type SafetensorsDType,
  type TensorEntry,
  WeightsError,
} from "./safetensors.ts";

export type ShapeSpec = ReadonlyMap<string, readonly number[]>;

export interface LoadOptions {
  /** Stored tensors the model does not use (a VAE's encoder when only decoding): neither loaded nor an error. */
  ignore?: (name: string) => boolean;
  /**
   * Matrices to load as column blocks of these widths, as `name#0`, `name#1`, ... (a linear over a
   * concatenation becomes a sum of linears over its parts, with no concatenated input in memory).
   */
  columnBlocks?: (name: string) => readonly number[] | undefined;
}

/** A checkpoint's tensor names and shapes; what checkKeys compares. */
export interface TensorIndex {
  /** Named in errors. */
  path: string;
  tensors: ReadonlyMap<string, { shape: readonly number[] }>;
}

export function checkKeys(index: TensorIndex, expected: ShapeSpec, options: LoadOptions = {}): void {
  const problems: string[] = [];
  const stored = [...index.tensors.keys()].filter((k) => !options.ignore?.(k));
  const missing = [...expected.keys()].filter((k) => !index.tensors.has(k));
  const unexpected = stored.filter((k) => !expected.has(k));
  if (missing.length) problems.push(`missing tensors: ${missing.join(", ")}`);
  if (unexpected.length) problems.push(`unexpected tensors: ${unexpected.join(", ")}`);
  for (const [name, shape] of expected) {
    const found = index.tensors.get(name)?.shape;
    if (found && found.join() !== shape.join()) {
      problems.push(`tensor "${name}": expected shape [${shape.join(", ")}], found [${found.join(", ")}]`);
    }
  }
  if (problems.length) throw new WeightsError(`${index.path}: ${problems.join("; ")}`);
}

const KEPT: Record<SafetensorsDType, DType> = { F32: "f32", F16: "f16", BF16: "bf16" };

/** The GPU dtype of a stored tensor (see the file comment). */
export function gpuDType(name: string, dtype: SafetensorsDType, shape: readonly number[]): DType {
  return name.endsWith(".weight") && shape.length >= 2 ? KEPT[dtype] : "f32";
}

const GIB = 1024 ** 3;
const formatBytes = (n: number) =>
  n >= GIB ? `${(n / GIB).toFixed(2)} GiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`;

/** Bytes the model will hold on the GPU; throws with the figures when a tensor exceeds one binding. */
export function planBytes(ctx: GpuContext, checkpoint: Checkpoint, names: Iterable<string>): number {
  const { maxStorageBufferBindingSize, maxBufferSize } = ctx.gpu.info.limits;
  const limit = Math.min(maxStorageBufferBindingSize, maxBufferSize);
  let total = 0;
  for (const name of names) {
    const { entry } = checkpoint.tensors.get(name)!;
    const dtype = gpuDType(name, entry.dtype, entry.shape);
    const bytes = elementCount(entry.shape) * (dtype === "f32" ? 4 : 2);
    if (bytes > limit) {
      throw new WeightsError(
        `${checkpoint.source}: tensor "${name}" needs ${formatBytes(bytes)}, the adapter allows ` +
          `${formatBytes(limit)} per buffer (maxStorageBufferBindingSize / maxBufferSize)`,
      );
    }
    total += bytes;
  }
  return total;
}

/**
 * Uploads every expected tensor, one at a time, file by file (a checkpoint is never held whole in memory). On
 * any error the tensors uploaded so far are released, so a failed load leaves nothing behind.
 */
export async function loadCheckpoint(
  ctx: GpuContext,
  checkpoint: Checkpoint,
  expected: ShapeSpec,
  options: LoadOptions = {},
): Promise<Map<string, Tensor>> {
  checkKeys(
    { path: checkpoint.source, tensors: new Map([...checkpoint.tensors].map(([k, v]) => [k, v.entry])) },
    expected,
    options,
  );
  planBytes(ctx, checkpoint, expected.keys());
  const tensors = new Map<string, Tensor>();
  try {
    for (const header of checkpoint.files) {
      const names = [...expected.keys()].filter((n) => checkpoint.tensors.get(n)!.header === header);
      await forEachTensorBytes(header, names, (entry, bytes) => {
        const values = decodeToFloat32(entry.dtype, bytes);
        const bad = values.findIndex((v) => !Number.isFinite(v));
        if (bad >= 0) {
          throw new WeightsError(
            `${header.path}: tensor "${entry.name}" has a non-finite value at index ${bad}`,
          );
        }
        const dtype = gpuDType(entry.name, entry.dtype, entry.shape);
        const upload = (data: Uint8Array, shape: readonly number[]) =>
          dtype === "f32"
            ? ctx.pool.upload(decodeToFloat32(entry.dtype, data), shape)
            : ctx.pool.uploadBytes(data, shape, dtype);
        const widths = options.columnBlocks?.(entry.name);
        if (!widths) {
          tensors.set(entry.name, upload(bytes, entry.shape));
          return;
        }
        for (const [i, block] of columnSlices(bytes, entry, widths).entries()) {
          tensors.set(`${entry.name}#${i}`, upload(block.bytes, block.shape));
        }
      });
    }
  } catch (e) {
    for (const t of tensors.values()) t.release();
    throw e;
  }
  return tensors;
}

/** The stored bytes of a [rows, columns] matrix cut into column blocks of `widths` (summing to columns). */
function columnSlices(bytes: Uint8Array, entry: TensorEntry, widths: readonly number[]) {
  const [rows, columns] = entry.shape;
  if (entry.shape.length !== 2 || widths.reduce((a, b) => a + b, 0) !== columns) {
    throw new WeightsError(`tensor "${entry.name}" [${entry.shape}] cannot be cut into columns of ${widths}`);
  }
  const size = bytes.length / (rows * columns);
  let start = 0;
  return widths.map((width) => {
    const block = new Uint8Array(rows * width * size);
    for (let r = 0; r < rows; r++) {
      const from = (r * columns + start) * size;
      block.set(bytes.subarray(from, from + width * size), r * width * size);
    }
    start += width;
    return { bytes: block, shape: [rows, width] };
  });
}

/** loadCheckpoint of `<dir>/<stem>.safetensors` or its shards. */
export async function loadWeights(
  ctx: GpuContext,
  dir: string,
  expected: ShapeSpec,
  options: LoadOptions & { stem?: string } = {},
): Promise<Map<string, Tensor>> {
  return await loadCheckpoint(ctx, await openCheckpoint(dir, options.stem), expected, options);
}
