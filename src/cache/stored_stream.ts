// What a skipped span keeps of one token stream between steps (StoredSpan, the whole-list strategies): the
// input the stream had when the span last stored and the residual the span added to it, with the ops over
// them. A forward of several images that decide apart (src/cache/image_rows.ts) also needs the replayed and
// fresh values in scratch, for their rows.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, copyCommand, disposeDispatches } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { axpy, type AxpyOp } from "../ops/axpy.ts";

export interface StreamStore {
  stream: Tensor;
  input: Tensor;
  residual: Tensor;
  snapshot: Command;
  /** residual = stream - input */
  store: AxpyOp;
  /** stream += residual */
  replay: AxpyOp;
  /** Batches of several images: stream + residual and stream - input into scratch, for their rows. */
  replayed: AxpyOp;
  fresh: AxpyOp;
  memoryBytes(): number;
  release(): void;
}

export function streamStore(ctx: GpuContext, label: string, stream: Tensor, images: number): StreamStore {
  const input = ctx.pool.tensor(stream.shape);
  const residual = ctx.pool.tensor(stream.shape);
  const store = axpy(ctx, input, stream, { alpha: -1, out: residual });
  const replay = axpy(ctx, residual, stream, { alpha: 1, inPlace: true });
  // One image never decides apart from itself: the scratch exists for batches only.
  const scratch = images > 1 ? [ctx.pool.tensor(stream.shape), ctx.pool.tensor(stream.shape)] : [];
  const replayed = images > 1 ? axpy(ctx, residual, stream, { alpha: 1, out: scratch[0] }) : replay;
  const fresh = images > 1 ? axpy(ctx, input, stream, { alpha: -1, out: scratch[1] }) : store;
  const snapshot = copyCommand(`${label}: input`, stream, input);
  return {
    stream,
    input,
    residual,
    snapshot,
    store,
    replay,
    replayed,
    fresh,
    memoryBytes: () => [input, residual, ...scratch].reduce((sum, t) => sum + t.byteLength, 0),
    release() {
      for (const op of new Set([store, replay, replayed, fresh])) op.release();
      disposeDispatches([snapshot]);
      for (const t of [input, residual, ...scratch]) t.release();
    },
  };
}
