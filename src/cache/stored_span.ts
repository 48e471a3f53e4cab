// What a skippable span of blocks keeps between steps (DBCache's middle, its unlisted B blocks, each DBPrune
// block), for every token stream the blocks update (cache-strategies.md): the input each stream had when the
// span last stored and the residual the span added to it, with the ops over them. As in the reference, the
// decision is measured on the image stream alone (the optional input diff), while every stream is stored
// and replayed: skipping FLUX's text-stream update would feed later blocks a stale text stream. A calibrator
// (TaylorSeer, FoCa or DMD, by the options' type) predicts the image stream, and the others only when
// `encoder` asks; a stream without one replays its residual, which is also what the reference does with the
// encoder calibrator off.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, type Dispatch, isDispatch } from "../gpu/kernel.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type AxpyOp, copyByDispatch } from "../ops/axpy.ts";
import { copyAsDispatch, type CopyDispatch } from "../ops/copy.ts";
import { type ResidualDiff, residualDiff } from "../ops/residual_diff.ts";
import { type Calibrator, createCalibrator } from "./calibrators/calibrator.ts";
import type { ConditionalSlot } from "./kernels/conditional_dispatch.ts";
import { ON_CACHED, ON_COMPUTE, SLOT } from "./kernels/decision_abi.ts";
import type { CalibratorOptions } from "./options.ts";
import { type StreamStore, streamStore } from "./stored_stream.ts";

interface StreamWithCalibrator extends StreamStore {
  seer: Calibrator | null;
}

export interface StoredSpanOptions {
  /** Measure the image stream's input against the stored one, over every k-th channel. */
  judge?: { downsample: number };
  calibrator: CalibratorOptions | null;
}

/** A span's conditional slots by role, in encoding order: snapshot, blocks, store (and updates), cached. */
export interface SpanSlots {
  snapshot: ConditionalSlot[];
  blocks: ConditionalSlot[];
  store: ConditionalSlot[];
  cached: ConditionalSlot[];
}

export class StoredSpan {
  readonly #ctx: GpuContext;
  readonly #streams: StreamWithCalibrator[];
  /** The image input's diff against the stored one; null unless judged. */
  readonly diff: ResidualDiff | null;
  /** Dispatch versions of the snapshots and of the blocks' copies, built when a GPU decision drives the span. */
  #copies: (AxpyOp | CopyDispatch)[] = [];

  /** `streams`: the image stream first (blockStreams). */
  constructor(ctx: GpuContext, label: string, streams: readonly Tensor[], options: StoredSpanOptions) {
    this.#ctx = ctx;
    const { calibrator } = options;
    this.#streams = streams.map((stream, i) => {
      const stored = streamStore(ctx, `${label} ${i}`, stream, 1);
      const residualType = calibrator?.cache_type === "residual";
      return {
        ...stored,
        seer: calibrator && (i === 0 || calibrator.encoder)
          ? createCalibrator(ctx, calibrator, {
            source: residualType ? stored.residual : stream,
            target: stream,
            mode: residualType ? "add" : "replace",
          })
          : null,
      };
    });
    const image = this.#streams[0];
    this.diff = options.judge
      ? residualDiff(ctx, image.input, image.stream, { downsample: options.judge.downsample })
      : null;
  }

  /** The image stream's stored input; DBCache first puts F's input there, consumed before M's snapshot. */
  get imageInput(): Tensor {
    return this.#streams[0].input;
  }

  /** Every stream's input, before the span runs on a step that stores. */
  get snapshot(): Command[] {
    return this.#streams.map((s) => s.snapshot);
  }

  /** Every stream's residual, after the span ran. */
  get store(): Dispatch[] {
    return this.#streams.flatMap((s) => s.store.dispatches);
  }

  /** Every stream += its stored residual. */
  get replay(): Dispatch[] {
    return this.#streams.flatMap((s) => s.replay.dispatches);
  }

  /** A step that skips the span: each stream replays, or takes its calibrator's prediction once it has one. */
  reuse(step: number, recorder: StepRecorder): void {
    for (const s of this.#streams) {
      if (s.seer?.ready) s.seer.approximate(step, recorder);
      else recorder.encode(s.replay.dispatches);
    }
  }

  /** After the store on a computed step: the calibrators take this step's values. */
  update(step: number, recorder: StepRecorder): void {
    for (const s of this.#streams) s.seer?.update(step, recorder);
  }

  /** What the calibrators' updates left for the host to receive (DMD's Gram rows), which reuse needs first. */
  async settled(): Promise<void> {
    await Promise.all(this.#streams.map((s) => s.seer?.settled?.()));
  }

  /**
   * The span as slots of a GPU decision: snapshots, the blocks, the stores and calibrator updates on computed
   * steps; on cached steps each stream's replay (while its calibrator has no history) and its prediction.
   * Copies cannot be made conditional, so the snapshots and the blocks' own copies (FLUX's split of the joint
   * attention output) run as dispatches here.
   */
  gpuSlots(blocks: readonly Command[]): SpanSlots {
    const onCompute = (dispatch: Dispatch): ConditionalSlot => ({ dispatch, code: ON_COMPUTE });
    const snapshots = this.#streams.map((s) => copyByDispatch(this.#ctx, s.stream, s.input));
    const blockDispatches = blocks.flatMap((c) =>
      isDispatch(c) ? [c] : this.#own(copyAsDispatch(this.#ctx, c))
    );
    this.#copies.push(...snapshots);
    const seers = this.#streams.map((s) => s.seer?.gpuSlots() ?? null);
    return {
      snapshot: snapshots.flatMap((c) => c.dispatches).map(onCompute),
      blocks: blockDispatches.map(onCompute),
      store: [...this.store.map(onCompute), ...seers.flatMap((seer) => seer?.compute ?? [])],
      cached: this.#streams.flatMap((s, i) => [
        ...s.replay.dispatches.map((dispatch) => ({
          dispatch,
          code: seers[i] ? SLOT.cachedWithoutHistory : ON_CACHED,
        })),
        ...(seers[i]?.cached ?? []),
      ]),
    };
  }

  #own(copy: CopyDispatch): Dispatch[] {
    this.#copies.push(copy);
    return copy.dispatches;
  }

  memoryBytes(): number {
    return this.#streams.reduce(
      (sum, s) => sum + s.memoryBytes() + (s.seer?.memoryBytes() ?? 0),
      0,
    );
  }

  release(): void {
    this.diff?.release();
    for (const op of this.#copies.splice(0)) op.release();
    for (const s of this.#streams.splice(0)) {
      s.seer?.release();
      s.release();
    }
  }
}
