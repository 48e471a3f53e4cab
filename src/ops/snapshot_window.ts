// A window of snapshots held in one tensor, ring [slots, ...snapshot shape], and its two kernels
// (shaders/snapshot_window.wgsl; CPU reference src/ref/snapshot_window.ts): the exact dot products of the
// newest slot with every slot per batch item (the DMD calibrator's Gram row), and a per-item linear
// combination of the slots into an output (its forecast). Built once per calibrator; the newest slot and the
// weights are queue writes, so each applies to the next submit that runs the dispatch.
import type { GpuContext } from "../gpu/context.ts";
import {
  bindKernel,
  type CopyCommand,
  copyCommand,
  type Dispatch,
  disposeDispatches,
  groups,
  KernelError,
  packUniform,
} from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { flatGrid } from "./grid.ts";

const KERNEL = "snapshot_window";
const WG = 256;
/** WG * GRAM_ITEMS = 4096 values per gram chunk, the most its 64-bit sums allow (the shader's header). */
const GRAM_ITEMS = 16;
const COMBINE_ITEMS = 4;
const BINDINGS = ["read", "read", "read_write", "read_write", "uniform"] as const;

/** The batch axis, as cache-dit's DMD fits it: the leading index of a tensor of rank > 1, else one item. */
export function batchItems(shape: readonly number[]): number {
  return shape.length > 1 ? shape[0] : 1;
}

export interface SnapshotWindow {
  /** [slots, ...snapshot shape]. */
  readonly ring: Tensor;
  readonly slots: number;
  /** The batch axis (batchItems) and the values per item. */
  readonly items: number;
  readonly size: number;
  /** [items, slots, chunks, 4] words of the gram's chunk sums, decoded by gramRows. */
  readonly partials: Tensor;
  /** The snapshot into `slot` (a buffer copy). */
  load(slot: number): CopyCommand;
  /** The dot products of `newest` with every slot into `partials`. */
  gram(newest: number): Dispatch[];
  /** out += (or =, by the mode) the slots weighted per item: weights [items, slots], 0 for unread slots. */
  combine(weights: Float64Array): Dispatch[];
  memoryBytes(): number;
  release(): void;
}

/**
 * A ring of `slots` snapshots shaped like `source`, whose combine writes `out` (same shape): "add" adds to
 * it, "replace" overwrites it.
 */
export function snapshotWindow(
  ctx: GpuContext,
  source: Tensor,
  slots: number,
  out: Tensor,
  mode: "add" | "replace",
): SnapshotWindow {
  const shapes = `source ${formatShape(source.shape)}, out ${formatShape(out.shape)}`;
  if (source.dtype !== "f32" || out.dtype !== "f32") throw new KernelError(KERNEL, `${shapes}: must be f32`);
  if (source.shape.join() !== out.shape.join()) {
    throw new KernelError(KERNEL, `${shapes}: shapes must be equal`);
  }
  if (!Number.isInteger(slots) || slots < 1) throw new KernelError(KERNEL, `slots ${slots} must be >= 1`);
  const items = batchItems(source.shape);
  const size = source.size / items;
  const chunks = groups(size, WG * GRAM_ITEMS);
  const ring = ctx.pool.tensor([slots, ...source.shape]);
  const weights = ctx.pool.tensor([items, slots]);
  const partials = ctx.pool.tensor([items, slots, chunks, 4], "u32");
  const uniform = (newest: number) =>
    packUniform([["u32", size], ["u32", items], ["u32", slots], ["u32", chunks], ["u32", newest]]);
  const buffers = [ring, weights, out, partials];
  const kernel = (entry: string, constants: Record<string, number>) =>
    ctx.kernels.get({ name: KERNEL, entry, bindings: BINDINGS, constants: { WG, ...constants } });
  const gram = bindKernel(
    ctx.gpu,
    kernel("gram", { ITEMS: GRAM_ITEMS }),
    buffers,
    [chunks, slots, items],
    uniform(0),
  );
  const combine = bindKernel(
    ctx.gpu,
    kernel("combine", { ITEMS: COMBINE_ITEMS, ADD: Number(mode === "add") }),
    buffers,
    flatGrid(ctx.gpu, groups(source.size, WG * COMBINE_ITEMS)),
    uniform(0),
  );
  const loads = Array.from(
    { length: slots },
    (_, slot) =>
      copyCommand(`${KERNEL}: slot ${slot}`, source, ring, { dstOffset: slot * source.byteLength }),
  );
  const checkSlot = (slot: number) => {
    if (!Number.isInteger(slot) || slot < 0 || slot >= slots) {
      throw new KernelError(KERNEL, `slot ${slot} is outside 0..${slots - 1}`);
    }
  };
  return {
    ring,
    slots,
    items,
    size,
    partials,
    load(slot) {
      checkSlot(slot);
      return loads[slot];
    },
    gram(newest) {
      checkSlot(newest);
      ctx.gpu.device.queue.writeBuffer(gram.uniform!, 0, uniform(newest));
      return [gram];
    },
    combine(w) {
      if (w.length !== items * slots) {
        throw new KernelError(KERNEL, `${w.length} weights, expected items ${items} x slots ${slots}`);
      }
      ctx.pool.write(weights, Float32Array.from(w));
      return [combine];
    },
    memoryBytes: () => ring.byteLength + weights.byteLength + partials.byteLength,
    release() {
      disposeDispatches([gram, combine]);
      for (const t of [ring, weights, partials]) t.release();
    },
  };
}

/**
 * The gram's dot products from its words ([items, slots, chunks, 4]: lo, hi, exponent, bad): [items *
 * slots] in f64, each chunk's 64-bit integer scaled by its power of two and the chunks summed; NaN where a
 * chunk saw an inf or NaN.
 */
export function gramRows(words: Uint32Array, items: number, slots: number): Float64Array {
  const chunks = words.length / (4 * items * slots);
  const signed = new Int32Array(words.buffer, words.byteOffset, words.length);
  const rows = new Float64Array(items * slots);
  for (let row = 0; row < rows.length; row++) {
    let sum = 0;
    for (let c = 0; c < chunks; c++) {
      const w = 4 * (row * chunks + c);
      if (words[w + 3] !== 0) {
        sum = NaN;
        break;
      }
      sum += (signed[w + 1] * 2 ** 32 + words[w]) * 2 ** signed[w + 2];
    }
    rows[row] = sum;
  }
  return rows;
}
