// DBPrune (cache-strategies.md): per step, every prunable block compares its input with the input it saw
// when it last ran; a similar one is pruned, hidden = input + its stored residual (or the TaylorSeer
// prediction of that residual or of its output), otherwise it runs and refreshes what it stores. Each judged
// block costs one counted readback, since the next block's input depends on the answer.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, copyCommand, disposeDispatches } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { axpy, type AxpyOp } from "../ops/axpy.ts";
import { type ResidualDiff, residualDiff } from "../ops/residual_diff.ts";
import type { StepRecorder } from "../pipeline/step_recorder.ts";
import { calibratorLabel, calibratorNotes, TaylorSeer } from "./calibrators/taylor_seer.ts";
import type { ResolvedDbPrune } from "./options.ts";
import { PruneDecision } from "./prune_decision.ts";
import {
  type BlockList,
  type CacheStats,
  type CacheStrategy,
  emptyStats,
  type ForwardInfo,
  type ForwardReport,
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
}

export type DbPruneStats = CacheStats & Required<Pick<CacheStats, "prunedBlocks" | "blockDiffs">>;

export class DbPrune implements CacheStrategy {
  readonly name = "dbprune";
  readonly #decision: PruneDecision;
  readonly #stats: DbPruneStats;
  #hidden: Tensor | null = null;
  /** Per block, null where it always runs. */
  #cache: (PrunableBlock | null)[] = [];

  constructor(private readonly ctx: GpuContext, private readonly options: ResolvedDbPrune) {
    this.#decision = new PruneDecision(options);
    const label = `dbprune F${options.Fn}B${options.Bn}${calibratorLabel(options.taylorseer)}`;
    const notes = [...options.notes, ...calibratorNotes(options.taylorseer)];
    this.#stats = { ...emptyStats(label, notes), prunedBlocks: [], blockDiffs: [] };
  }

  async forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport> {
    const cache = this.#prepare(list);
    const gate = this.#decision.beginStep(info.step);
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
      const store = c !== null && this.#decision.shouldStore(info.step, c.stored);
      if (store) recorder.encode([c.snapshot]);
      recorder.encode(block);
      if (store) {
        recorder.encode(c.store.dispatches);
        c.seer?.update(info.step, recorder);
        c.stored = true;
      }
      blocksRun++;
    }
    const pruned = this.#decision.endStep();
    const measured = diffs.filter((d): d is number => d !== null);
    const diff = measured.length > 0 ? measured.reduce((a, b) => a + b, 0) / measured.length : null;
    this.#record(info.step, gate ?? (pruned > 0 ? "similar" : "not_similar"), pruned, diffs, diff);
    this.#stats.blocksExecuted += blocksRun;
    this.#stats.blocksTotal += list.blocks.length;
    return { blocksRun, cached: pruned > 0, ...(diff === null ? {} : { diff }) };
  }

  settle(): Promise<ForwardReport[]> {
    return Promise.resolve([]);
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
      for (const op of [c.store, c.diff, c.replay, c.seer]) op?.release();
      disposeDispatches([c.snapshot]);
      c.input.release();
      c.residual.release();
    }
    this.#hidden = null;
  }

  #record(
    step: number,
    gate: CacheStats["gates"][number],
    pruned: number,
    blockDiffs: (number | null)[],
    diff: number | null,
  ): void {
    const s = this.#stats;
    s.steps++;
    (pruned > 0 ? s.cachedSteps : s.computedSteps).push(step);
    s.gates.push(gate);
    s.diffs.push(diff);
    s.prunedBlocks.push(pruned);
    s.blockDiffs.push(blockDiffs);
  }

  /** Per-block buffers and dispatches, built on the first forward for the request's `hidden`. */
  #prepare(list: BlockList): (PrunableBlock | null)[] {
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
      };
    });
    return this.#cache;
  }
}
