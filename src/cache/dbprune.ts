// DBPrune (cache-strategies.md): per step, every prunable block compares its image input with the input it
// saw when it last ran; a similar one is pruned, every stream = its input + the block's stored residual for
// that stream (or the TaylorSeer prediction of that residual or of its output), otherwise it runs and
// refreshes what it stores. On the GPU path (src/cache/decision_path.ts) each block is decided on the GPU
// (src/cache/kernels/prune_decision.ts, calibrators included) and the decision log is read behind the loop;
// on the readback path each judged block costs one counted readback, since the next block's input depends
// on the answer.
import type { GpuContext } from "../gpu/context.ts";
import type { Command } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type GpuPruneDecision, gpuPruneDecision } from "./kernels/prune_decision.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import {
  calibratorHistory,
  calibratorLabel,
  calibratorNeedsHost,
  calibratorNotes,
} from "./calibrators/calibrator.ts";
import type { ResolvedDbPrune } from "./options.ts";
import type { Gate } from "./decision.ts";
import { chooseDecisionPath, type DecisionPath, knownDecisionCosts } from "./decision_path.ts";
import { PruneDecision } from "./prune_decision.ts";
import { StoredSpan } from "./stored_span.ts";
import {
  type BlockList,
  blockStreams,
  type CacheStats,
  type CacheStrategy,
  checkStreams,
  emptyStats,
  type ForwardInfo,
  type ForwardReport,
  recordStep,
} from "./strategy.ts";

/** A prunable block's cache, and whether it has stored yet. */
interface PrunableBlock {
  span: StoredSpan;
  stored: boolean;
}

/** GPU-decided mode: where a block's slots change role (snapshots, block, stores and updates, cached path). */
interface SlotLayout {
  snapshotEnd: number;
  blockEnd: number;
  computeEnd: number;
}

export type DbPruneStats =
  & CacheStats
  & Required<Pick<CacheStats, "prunedBlocks" | "blockDiffs" | "prunedRatio">>;

export class DbPrune implements CacheStrategy {
  readonly name = "dbprune";
  readonly #decision: PruneDecision;
  readonly #stats: DbPruneStats;
  /** The streams the cache was built for, on the first forward: the image stream, then the others. */
  #streams: Tensor[] | null = null;
  /** Per block, null where it always runs. */
  #cache: (PrunableBlock | null)[] = [];
  /** Present on the GPU path (chosen on the first forward). */
  #gpu: GpuPruneDecision | null = null;
  readonly #slotLayout: (SlotLayout | null)[] = [];
  /** GPU path: each forwarded step and the gate the host applied to it (null: the GPU decided). */
  readonly #pending: { step: number; gate: Gate | null }[] = [];
  /** Steps forwarded so far, on either path. */
  #forwarded = 0;
  /** The settle() reads in flight, in order: each records its steps after the one before. */
  #settled: Promise<ForwardReport[]> = Promise.resolve([]);

  /** `path`: the decision path; absent, the adapter's choice for this block list (chooseDecisionPath). */
  constructor(
    private readonly ctx: GpuContext,
    private readonly options: ResolvedDbPrune,
    private readonly path?: DecisionPath,
  ) {
    this.#decision = new PruneDecision(options);
    const label = `dbprune F${options.Fn}B${options.Bn}${calibratorLabel(options.calibrator)}`;
    this.#stats = { ...emptyStats(label, options.notes), prunedBlocks: [], blockDiffs: [], prunedRatio: 0 };
  }

  async forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport | null> {
    const cache = this.#prepare(list, info.steps);
    // Nothing is stored before the first forward, so it computes every block.
    const first = this.#forwarded++ === 0;
    const gate = this.#decision.beginStep(info.step) ?? (first ? "no_reference" : null);
    if (this.#gpu) {
      this.#forwardDecidedOnGpu(this.#gpu, info.step, gate, first, list, recorder);
      return null;
    }
    const diffs: (number | null)[] = list.blocks.map(() => null);
    for (const [i, block] of list.blocks.entries()) {
      const c = cache[i];
      if (c && gate === null && c.stored) {
        const diff = c.span.diff!;
        recorder.encode(diff.dispatches);
        this.#stats.readbacks++;
        diffs[i] = (await recorder.read(diff.result))[0];
        if (this.#decision.decideBlock(diffs[i]!)) {
          await c.span.settled();
          c.span.reuse(info.step, recorder);
          continue;
        }
      }
      this.#runBlock(c, block, info.step, recorder);
    }
    return this.#record(info.step, gate, this.#decision.endStep(), diffs, list.blocks.length);
  }

  /** Reports of the steps forwarded on the GPU path since the last call, from the decision log (one readback). */
  settle(recorder: StepRecorder): Promise<ForwardReport[]> {
    const gpu = this.#gpu;
    if (!gpu || this.#pending.length === 0) return Promise.resolve([]);
    // The copy of the log is made now, behind the steps forwarded so far; later steps are the next call's.
    const steps = this.#pending.splice(0);
    const read = recorder.read(gpu.state);
    this.#stats.readbacks++;
    const blocks = this.options.blocks;
    this.#settled = this.#settled.then(async () => {
      const logged = gpu.decode(await read);
      return steps.map(({ step, gate }) => {
        if (gate !== null) return this.#record(step, gate, 0, new Array(blocks).fill(null), blocks);
        const { pruned, diffs, limited } = logged[step];
        const count = pruned.filter((p) => p).length;
        return this.#record(step, limited ? "max_pruned_steps" : null, count, diffs, blocks);
      });
    });
    return this.#settled;
  }

  /** A block that runs, storing its inputs and residuals when the refresh rule says so. */
  #runBlock(c: PrunableBlock | null, block: readonly Command[], step: number, recorder: StepRecorder): void {
    const store = c !== null && this.#decision.shouldStore(step, c.stored);
    if (store) recorder.encode(c.span.snapshot);
    recorder.encode(block);
    if (store) {
      recorder.encode(c.span.store);
      c.span.update(step, recorder);
      c.stored = true;
    }
  }

  /**
   * Every prunable block through its decision kernel: judged on the GPU, or forced to run when the host gated
   * the step, so the kernels' counters and TaylorSeer's histories see every step.
   */
  #forwardDecidedOnGpu(
    gpu: GpuPruneDecision,
    step: number,
    gate: Gate | null,
    first: boolean,
    list: BlockList,
    recorder: StepRecorder,
  ): void {
    // After the first forward every prunable block has stored, so refreshing follows the interval alone.
    const refresh = first || this.#decision.shouldStore(step, true);
    this.#pending.push({ step, gate });
    gpu.setStep(step, { forced: gate !== null, refresh });
    for (const [i, block] of list.blocks.entries()) {
      const c = this.#cache[i];
      const d = gpu.blocks[i];
      if (!c || !d) {
        recorder.encode(block);
        continue;
      }
      // Outside refresh steps a block that runs stores nothing: its snapshots, stores and updates stay out.
      const { snapshotEnd, blockEnd, computeEnd } = this.#slotLayout[i]!;
      const slots = refresh
        ? d.slots
        : [...d.slots.slice(snapshotEnd, blockEnd), ...d.slots.slice(computeEnd)];
      recorder.encode([...(gate === null ? c.span.diff!.dispatches : []), ...d.commands, ...slots]);
    }
  }

  stats(): DbPruneStats {
    return { ...this.#stats, memoryBytes: this.memoryBytes() };
  }

  memoryBytes(): number {
    return this.#cache.reduce((sum, c) => sum + (c?.span.memoryBytes() ?? 0), 0);
  }

  release(): void {
    for (const c of this.#cache.splice(0)) c?.span.release();
    this.#gpu?.release();
    this.#gpu = null;
    this.#streams = null;
  }

  /** Adds a step to the stats; gate null: decided per block ("similar" when a block was pruned). */
  #record(
    step: number,
    gate: Gate | null,
    pruned: number,
    blockDiffs: (number | null)[],
    blocks: number,
  ): ForwardReport {
    const measured = blockDiffs.filter((d): d is number => d !== null);
    const diff = measured.length > 0 ? measured.reduce((a, b) => a + b, 0) / measured.length : null;
    const cached = pruned > 0;
    const decision = { cached, gate: gate ?? (cached ? "similar" : "not_similar") } as const;
    const s = this.#stats;
    const report = recordStep(s, step, decision, diff, blocks - pruned, blocks);
    s.prunedBlocks.push(pruned);
    s.blockDiffs.push(blockDiffs);
    s.prunedRatio = (s.blocksTotal - s.blocksExecuted) / s.blocksTotal;
    return report;
  }

  /** Per-block buffers and dispatches, built on the first forward for the request's streams. */
  #prepare(list: BlockList, steps: number): (PrunableBlock | null)[] {
    const { blocks, calibrator } = this.options;
    if (list.blocks.length !== blocks) {
      throw new Error(
        `dbprune: options were resolved for ${blocks} blocks, the model has ${list.blocks.length}`,
      );
    }
    if (this.#streams) {
      checkStreams("dbprune", this.#streams, list);
      return this.#cache;
    }
    const streams = blockStreams(list);
    this.#streams = streams;
    this.#cache = list.blocks.map((_, i): PrunableBlock | null =>
      this.#decision.prunable(i)
        ? {
          span: new StoredSpan(this.ctx, `dbprune: block ${i}`, streams, {
            judge: { downsample: 1 },
            calibrator,
          }),
          stored: false,
        }
        : null
    );
    this.#stats.notes.push(...calibratorNotes(calibrator, streams.length, true));
    // A pruned block leaves its own dispatches and its stores empty, a block that runs runs them indirectly;
    // the readback path reads its diff.
    const prunable = this.#cache.flatMap((c, i) => (c ? [list.blocks[i].length + 2 * streams.length] : []));
    const slots = prunable.reduce((a, b) => a + b, 0);
    // DMD fits on the host after every computed step, so the host must know which steps computed.
    const needsHost = calibratorNeedsHost(this.options.calibrator);
    const path = needsHost ? "readback" : this.path ?? chooseDecisionPath(knownDecisionCosts(this.ctx), {
      emptyDispatches: slots,
      indirectDispatches: slots,
      readbacks: prunable.length,
    });
    this.#stats.decisions = path;
    if (path === "gpu") this.#gpu = this.#decidedOnGpu(list, steps);
    return this.#cache;
  }

  #decidedOnGpu(list: BlockList, steps: number): GpuPruneDecision {
    const inputs = this.#cache.map((c, i) => {
      if (!c) return null;
      const s = c.span.gpuSlots(list.blocks[i]);
      const blockEnd = s.snapshot.length + s.blocks.length;
      this.#slotLayout[i] = {
        snapshotEnd: s.snapshot.length,
        blockEnd,
        computeEnd: blockEnd + s.store.length,
      };
      return { diff: c.span.diff!.result, slots: [...s.snapshot, ...s.blocks, ...s.store, ...s.cached] };
    });
    const derivatives = calibratorHistory(this.options.calibrator);
    return gpuPruneDecision(this.ctx, inputs, steps, { ...this.options, derivatives });
  }
}
