// DBPrune (cache-strategies.md): per step, every prunable block compares its input with the input it saw
// when it last ran; a similar one is pruned, hidden = input + its stored residual (or the TaylorSeer
// prediction of that residual or of its output), otherwise it runs and refreshes what it stores. When nobody
// waits on per-step reports each block is decided on the GPU (src/cache/kernels/prune_decision.ts, TaylorSeer included)
// and the run reads the decisions once at the end; otherwise each judged block costs one counted readback,
// since the next block's input depends on the answer.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, copyCommand, type Dispatch, disposeDispatches, isDispatch } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { axpy, type AxpyOp, copyByDispatch } from "../ops/axpy.ts";
import { type GpuPruneDecision, gpuPruneDecision } from "./kernels/prune_decision.ts";
import { ON_CACHED, ON_COMPUTE, SLOT } from "./kernels/decision_abi.ts";
import { type ResidualDiff, residualDiff } from "../ops/residual_diff.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import { calibratorLabel, calibratorNotes, TaylorSeer } from "./calibrators/taylor_seer.ts";
import type { ResolvedDbPrune } from "./options.ts";
import type { Gate } from "./decision.ts";
import { PruneDecision } from "./prune_decision.ts";
import {
  type BlockList,
  type CacheStats,
  type CacheStrategy,
  emptyStats,
  type ForwardInfo,
  type ForwardReport,
  recordStep,
} from "./strategy.ts";

/** A prunable block's cache: its input and residual when it last stored, and the ops over them. */
interface PrunableBlock {
  input: Tensor;
  residual: Tensor;
  snapshot: Command;
  store: AxpyOp;
  diff: ResidualDiff;
  replay: AxpyOp;
  seer: TaylorSeer | null;
  stored: boolean;
  /** GPU-decided mode: the input snapshot as a dispatch (copies cannot be made conditional). */
  snapshotDispatch: AxpyOp | null;
}

export type DbPruneStats =
  & CacheStats
  & Required<Pick<CacheStats, "prunedBlocks" | "blockDiffs" | "prunedRatio">>;

export class DbPrune implements CacheStrategy {
  readonly name = "dbprune";
  readonly #decision: PruneDecision;
  readonly #stats: DbPruneStats;
  #hidden: Tensor | null = null;
  /** Per block, null where it always runs. */
  #cache: (PrunableBlock | null)[] = [];
  /** Present when the GPU decides (chosen on the first forward). */
  #gpu: GpuPruneDecision | null = null;
  /** GPU-decided mode: where each prunable block's slots end (block, then compute path). */
  readonly #slotLayout: ({ blockEnd: number; computeEnd: number } | null)[] = [];
  /** GPU-decided mode: each forwarded step and the gate the host applied to it (null: the GPU decided). */
  readonly #pending: { step: number; gate: Gate | null }[] = [];

  constructor(private readonly ctx: GpuContext, private readonly options: ResolvedDbPrune) {
    this.#decision = new PruneDecision(options);
    const label = `dbprune F${options.Fn}B${options.Bn}${calibratorLabel(options.taylorseer)}`;
    const notes = [...options.notes, ...calibratorNotes(options.taylorseer)];
    this.#stats = { ...emptyStats(label, notes), prunedBlocks: [], blockDiffs: [], prunedRatio: 0 };
  }

  async forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport | null> {
    const cache = this.#prepare(list, info);
    // Nothing is stored before the first forward, so it computes every block.
    const gate = this.#decision.beginStep(info.step) ??
      (this.#stats.steps + this.#pending.length === 0 ? "no_reference" : null);
    if (this.#gpu) {
      this.#forwardDecidedOnGpu(this.#gpu, info.step, gate, list, recorder);
      return null;
    }
    const diffs: (number | null)[] = list.blocks.map(() => null);
    let blocksRun = 0;
    for (const [i, block] of list.blocks.entries()) {
      const c = cache[i];
      if (c && gate === null && c.stored) {
        recorder.encode(c.diff.dispatches);
        this.#stats.readbacks++;
        diffs[i] = (await recorder.read(c.diff.result))[0];
        if (this.#decision.decideBlock(diffs[i]!)) {
          if (c.seer?.ready) c.seer.approximate(info.step, recorder);
          else recorder.encode(c.replay.dispatches);
          continue;
        }
      }
      this.#runBlock(c, block, info.step, recorder);
      blocksRun++;
    }
    return this.#record(info.step, gate, this.#decision.endStep(), diffs, list.blocks.length);
  }

  /** Reports of the steps forwarded in GPU-decided mode, from the decision log (one readback). */
  async settle(recorder: StepRecorder): Promise<ForwardReport[]> {
    if (!this.#gpu) return [];
    const logged = this.#gpu.decode(await recorder.read(this.#gpu.state));
    this.#stats.readbacks++;
    const blocks = this.options.blocks;
    return this.#pending.splice(0).map(({ step, gate }) => {
      if (gate !== null) return this.#record(step, gate, 0, new Array(blocks).fill(null), blocks);
      const { pruned, diffs, limited } = logged[step];
      const count = pruned.filter((p) => p).length;
      return this.#record(step, limited ? "max_pruned_steps" : null, count, diffs, blocks);
    });
  }

  /** A block that runs, storing its input and residual when the refresh rule says so. */
  #runBlock(c: PrunableBlock | null, block: readonly Command[], step: number, recorder: StepRecorder): void {
    const store = c !== null && this.#decision.shouldStore(step, c.stored);
    if (store) recorder.encode([c.snapshot]);
    recorder.encode(block);
    if (store) {
      recorder.encode(c.store.dispatches);
      c.seer?.update(step, recorder);
      c.stored = true;
    }
  }

  /** Host-gated steps run every block; otherwise each prunable block's diff, decision and both paths. */
  /**
   * Every prunable block through its decision kernel: judged on the GPU, or forced to run when the host gated
   * the step, so the kernels' counters and TaylorSeer's histories see every step.
   */
  #forwardDecidedOnGpu(
    gpu: GpuPruneDecision,
    step: number,
    gate: Gate | null,
    list: BlockList,
    recorder: StepRecorder,
  ): void {
    // After the first forward every prunable block has stored, so refreshing follows the interval alone.
    const refresh = this.#pending.length === 0 || this.#decision.shouldStore(step, true);
    this.#pending.push({ step, gate });
    gpu.setStep(step, { forced: gate !== null, refresh });
    for (const [i, block] of list.blocks.entries()) {
      const c = this.#cache[i];
      const d = gpu.blocks[i];
      if (!c || !d) {
        recorder.encode(block);
        continue;
      }
      // Slots: [snapshot, ...block, store, ...TaylorSeer update | replay, ...TaylorSeer extrapolation]; outside
      // refresh steps a block that runs stores nothing.
      const { blockEnd, computeEnd } = this.#slotLayout[i]!;
      const slots = refresh ? d.slots : [...d.slots.slice(1, blockEnd), ...d.slots.slice(computeEnd)];
      recorder.encode([...(gate === null ? c.diff.dispatches : []), ...d.commands, ...slots]);
    }
  }

  stats(): DbPruneStats {
    return { ...this.#stats, memoryBytes: this.memoryBytes() };
  }

  memoryBytes(): number {
    return this.#cache.reduce(
      (sum, c) => sum + (c ? c.input.byteLength + c.residual.byteLength + (c.seer?.memoryBytes() ?? 0) : 0),
      0,
    );
  }

  release(): void {
    for (const c of this.#cache.splice(0)) {
      if (!c) continue;
      for (const op of [c.store, c.diff, c.replay, c.seer, c.snapshotDispatch]) op?.release();
      disposeDispatches([c.snapshot]);
      c.input.release();
      c.residual.release();
    }
    this.#gpu?.release();
    this.#gpu = null;
    this.#hidden = null;
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

  /** Per-block buffers and dispatches, built on the first forward for the request's `hidden`. */
  #prepare(list: BlockList, info: ForwardInfo): (PrunableBlock | null)[] {
    const { blocks, taylorseer } = this.options;
    if (list.blocks.length !== blocks) {
      throw new Error(
        `dbprune: options were resolved for ${blocks} blocks, the model has ${list.blocks.length}`,
      );
    }
    if (this.#hidden) {
      if (this.#hidden !== list.hidden) throw new Error("dbprune: hidden changed within a request");
      return this.#cache;
    }
    const { ctx } = this;
    const hidden = list.hidden;
    this.#hidden = hidden;
    this.#cache = list.blocks.map((_, i): PrunableBlock | null => {
      if (!this.#decision.prunable(i)) return null;
      const input = ctx.pool.tensor(hidden.shape);
      const residual = ctx.pool.tensor(hidden.shape);
      const residualType = taylorseer?.cache_type === "residual";
      return {
        input,
        residual,
        snapshot: copyCommand(`dbprune: block ${i} input`, hidden, input),
        store: axpy(ctx, input, hidden, { alpha: -1, out: residual }),
        diff: residualDiff(ctx, input, hidden),
        replay: axpy(ctx, residual, hidden, { alpha: 1, inPlace: true }),
        seer: taylorseer && new TaylorSeer(ctx, {
          source: residualType ? residual : hidden,
          target: hidden,
          mode: residualType ? "add" : "replace",
          nDerivatives: taylorseer.n_derivatives,
        }),
        stored: false,
        snapshotDispatch: null,
      };
    });
    // The GPU decides unless a block holds a copy (copies cannot be skipped).
    const dispatchesOnly = list.blocks.every((b) => b.every(isDispatch));
    if (info.deferReport && dispatchesOnly) this.#gpu = this.#decidedOnGpu(list, info.steps);
    return this.#cache;
  }

  #decidedOnGpu(list: BlockList, steps: number): GpuPruneDecision {
    const inputs = this.#cache.map((c, i) => {
      if (!c) return null;
      c.snapshotDispatch = copyByDispatch(this.ctx, list.hidden, c.input);
      const seer = c.seer?.gpuSlots();
      const compute = [
        ...c.snapshotDispatch.dispatches,
        ...list.blocks[i] as Dispatch[],
        ...c.store.dispatches,
      ]
        .map((dispatch) => ({ dispatch, code: ON_COMPUTE }));
      const replay = c.replay.dispatches.map((dispatch) => ({
        dispatch,
        code: seer ? SLOT.cachedWithoutHistory : ON_CACHED,
      }));
      this.#slotLayout[i] = {
        blockEnd: 1 + list.blocks[i].length,
        computeEnd: compute.length + (seer?.compute.length ?? 0),
      };
      return {
        diff: c.diff.result,
        slots: [...compute, ...(seer?.compute ?? []), ...replay, ...(seer?.cached ?? [])],
      };
    });
    const derivatives = this.options.taylorseer?.n_derivatives ?? 0;
    return gpuPruneDecision(this.ctx, inputs, steps, { ...this.options, derivatives });
  }
}
