// DBCache and FBCache (cache-strategies.md): F = blocks[0, Fn) always runs and its residual R_F (image
// stream) is compared with R_F* from the last computed step; a cached step replays M's stored residual of every
// stream instead of running M; B = the last Bn blocks runs every step on what that gives (or, with
// Bn_compute_blocks_ids, only the listed ones and the others whose image input barely moved, which replay
// their own residuals). With a calibrator (TaylorSeer, FoCa) a cached step predicts M's residual (or the state
// after M) of the image stream, and of the text stream when enable_encoder_taylorseer, instead of replaying.
// Decisions (src/cache/decision_path.ts): on the GPU path the GPU decides the steps and B's per-block rule
// (GpuDecidedSpan, calibrators included) and the log is read behind the loop; on the readback path, one
// counted readback per step for the diff (none when a gate before the threshold decides), and one per
// unlisted B block on cached steps. A static step mask is decided on the host without a readback.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, copyCommand, disposeDispatches } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { axpy, type AxpyOp, copyByDispatch } from "../ops/axpy.ts";
import { type ResidualDiff, residualDiff } from "../ops/residual_diff.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import {
  calibratorHistory,
  calibratorLabel,
  calibratorNeedsHost,
  calibratorNotes,
} from "./calibrators/calibrator.ts";
import { CacheDecision, type Decision, similar, stepGate } from "./decision.ts";
import {
  chooseDecisionPath,
  type DecisionPath,
  knownDecisionCosts,
  type PathDemand,
} from "./decision_path.ts";
import { GpuDecidedSpan, type JudgedBlock } from "./gpu_decided_span.ts";
import { ON_COMPUTE, SLOT } from "./kernels/decision_abi.ts";
import type { ResolvedDbCache } from "./options.ts";
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

interface Buffers {
  /** What the buffers were built for: the image stream, then the others. */
  streams: Tensor[];
  /** R_F and R_F*, shaped like the image stream. */
  residualF: Tensor;
  referenceF: Tensor;
  /** F's input into middle.imageInput, which M's snapshot overwrites after R_F is taken. */
  snapshotIn: Command;
  storeF: AxpyOp;
  diff: ResidualDiff;
  keepReference: Command;
  middle: StoredSpan;
  /** Per B block, null where it always runs. */
  stored: (StoredSpan | null)[];
  /** Present on the GPU path (chosen on the first forward), with its copy of R_F into R_F*. */
  gpu: { span: GpuDecidedSpan; keepReference: AxpyOp } | null;
}

export interface DbCacheSettings {
  /** The decision path; absent: the adapter's choice for this block list (chooseDecisionPath). */
  path?: DecisionPath;
  /**
   * The conditional pass' cache, whose diff of the same step this (unconditional) pass decides on
   * (cfg_diff_compute_separate false); it forwards first in every step, and this pass takes its path.
   */
  sharedDiff?: DbCache;
}

export class DbCache implements CacheStrategy {
  readonly name: string;
  readonly #decision: CacheDecision;
  #buffers: Buffers | null = null;
  readonly #stats: CacheStats;
  /** Steps forwarded on the GPU path, awaiting settle(). */
  readonly #pending: number[] = [];
  /** Steps forwarded so far (their reports may still be on the GPU). */
  #forwarded = 0;
  /** The settle() reads in flight, in order: each records its steps after the one before. */
  #settled: Promise<ForwardReport[]> = Promise.resolve([]);
  /** The last host-measured diff, for the pass that shares it. */
  #measured: { step: number; diff: number } | null = null;
  readonly #sharedDiff: DbCache | null;

  constructor(
    private readonly ctx: GpuContext,
    private readonly options: ResolvedDbCache,
    private readonly settings: DbCacheSettings = {},
  ) {
    this.#sharedDiff = settings.sharedDiff ?? null;
    this.name = options.strategy;
    this.#decision = new CacheDecision(options);
    this.#stats = emptyStats(
      `${options.strategy} F${options.Fn}B${options.Bn}${calibratorLabel(options.calibrator)}`,
      options.notes,
    );
  }

  async forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport | null> {
    const b = this.#prepare(list, info.steps);
    const forwardedBefore = this.#forwarded++ > 0;
    const { Fn } = this.options;
    recorder.encode([b.snapshotIn]);
    for (const block of list.blocks.slice(0, Fn)) recorder.encode(block);
    recorder.encode(b.storeF.dispatches);
    if (b.gpu) {
      this.#forwardDecidedOnGpu(b.gpu.span, info.step, forwardedBefore, list, recorder);
      return null;
    }
    let diff: number | null = null;
    if (this.#decision.needsDiff(info.step)) {
      diff = this.#sharedDiff?.diffAt(info.step) ?? null;
      if (diff === null) {
        recorder.encode(b.diff.dispatches);
        diff = await this.#read(recorder, b.diff.result);
      }
    }
    if (diff !== null) this.#measured = { step: info.step, diff };
    const decision = this.#decision.decide(info.step, diff);
    const blocksRun = await this.#runPaths(decision, info.step, list, recorder);
    return recordStep(this.#stats, info.step, decision, diff, blocksRun, list.blocks.length);
  }

  /** Reports of the steps the GPU decided since the last call, from its log (one readback); [] when none. */
  settle(recorder: StepRecorder): Promise<ForwardReport[]> {
    const gpu = this.#buffers?.gpu;
    if (!gpu || this.#pending.length === 0) return Promise.resolve([]);
    const { Fn, Bn, blocks } = this.options;
    // The copy of the log is made now, behind the steps forwarded so far; later steps are the next call's.
    const steps = this.#pending.splice(0);
    const read = gpu.span.settle(recorder);
    this.#stats.readbacks++;
    this.#settled = this.#settled.then(async () => {
      const logged = await read;
      return steps.map((step) => {
        const { cached, diff, gate, replayed } = logged[step];
        const run = cached ? Fn + Bn - replayed : blocks;
        return recordStep(this.#stats, step, { cached, gate }, diff, run, blocks);
      });
    });
    return this.#settled;
  }

  /** The path this cache's decisions take, once the first forward chose it; null while none did. */
  get path(): DecisionPath | null {
    return this.#stats.decisions ?? null;
  }

  #forwardDecidedOnGpu(
    gpu: GpuDecidedSpan,
    step: number,
    forwardedBefore: boolean,
    list: BlockList,
    recorder: StepRecorder,
  ): void {
    // The first forward always computes (nothing is stored yet), so "computed before" = "forwarded before".
    const bBlocks = list.blocks.slice(list.blocks.length - this.options.Bn);
    gpu.encode(step, stepGate(this.options, step, forwardedBefore), bBlocks, recorder);
    this.#pending.push(step);
  }

  /** M (or its replacement) and B for a decided step; returns the blocks run. */
  async #runPaths(
    decision: Decision,
    step: number,
    list: BlockList,
    recorder: StepRecorder,
  ): Promise<number> {
    const b = this.#buffers!;
    const { Fn, Bn } = this.options;
    const L = list.blocks.length;
    let blocksRun = Fn;
    if (decision.cached) {
      // A calibrator that fits on the host (DMD) may still be reading its last update back.
      await b.middle.settled();
      b.middle.reuse(step, recorder);
    } else {
      recorder.encode([b.keepReference, ...b.middle.snapshot]);
      for (const block of list.blocks.slice(Fn, L - Bn)) recorder.encode(block);
      recorder.encode(b.middle.store);
      b.middle.update(step, recorder);
      blocksRun += L - Fn - Bn;
    }
    return blocksRun + await this.#runB(list.blocks.slice(L - Bn), decision.cached, recorder);
  }

  stats(): CacheStats {
    return { ...this.#stats, memoryBytes: this.memoryBytes() };
  }

  /** The diff a host-decided `step` was decided on, once forwarded; null where none was measured. */
  diffAt(step: number): number | null {
    return this.#measured?.step === step ? this.#measured.diff : null;
  }

  /** The GPU's diff of the current step, for a pass that decides on it on the GPU path. */
  get gpuDiff(): ResidualDiff {
    const b = this.#buffers;
    if (!b?.gpu) throw new Error(`${this.name}: the shared diff is not decided on the GPU`);
    return { dispatches: [], result: b.diff.result, means: b.diff.means, release() {} };
  }

  memoryBytes(): number {
    const b = this.#buffers;
    if (!b) return 0;
    const spans = [b.middle, ...b.stored].reduce((sum, s) => sum + (s?.memoryBytes() ?? 0), 0);
    return b.residualF.byteLength + b.referenceF.byteLength + spans;
  }

  release(): void {
    const b = this.#buffers;
    if (!b) return;
    this.#buffers = null;
    for (const op of [b.storeF, b.diff, b.middle, ...b.stored, b.gpu?.span, b.gpu?.keepReference]) {
      op?.release();
    }
    disposeDispatches([b.snapshotIn, b.keepReference]);
    b.residualF.release();
    b.referenceF.release();
  }

  /** B blocks; returns how many ran. On computed steps the unlisted ones also store inputs and residuals. */
  async #runB(blocks: readonly Command[][], cached: boolean, recorder: StepRecorder): Promise<number> {
    const stored = this.#buffers!.stored;
    let run = 0;
    for (const [j, block] of blocks.entries()) {
      const s = stored[j];
      if (cached && s) {
        recorder.encode(s.diff!.dispatches);
        const diff = await this.#read(recorder, s.diff!.result);
        if (similar(diff, this.options.non_compute_blocks_diff_threshold)) {
          recorder.encode(s.replay);
          continue;
        }
      }
      const storing = !cached && s;
      if (storing) recorder.encode(s.snapshot);
      recorder.encode(block);
      if (storing) recorder.encode(s.store);
      run++;
    }
    return run;
  }

  async #read(recorder: StepRecorder, result: Tensor): Promise<number> {
    this.#stats.readbacks++;
    return (await recorder.read(result))[0];
  }

  /** Buffers and dispatches are built once, on the first forward, for the request's streams. */
  #prepare(list: BlockList, steps: number): Buffers {
    const { blocks, Bn, strategy, calibrator } = this.options;
    if (list.blocks.length !== blocks) {
      throw new Error(
        `${strategy}: options were resolved for ${blocks} blocks, the model has ${list.blocks.length}`,
      );
    }
    if (this.#buffers) {
      checkStreams(strategy, this.#buffers.streams, list);
      return this.#buffers;
    }
    const streams = blockStreams(list);
    const { ctx } = this;
    const hidden = list.hidden;
    const downsample = this.options.downsample_factor;
    const [residualF, referenceF] = [ctx.pool.tensor(hidden.shape), ctx.pool.tensor(hidden.shape)];
    const middle = new StoredSpan(ctx, `${strategy}: M`, streams, { calibrator });
    const listed = this.options.Bn_compute_blocks_ids;
    const stored = Array.from(
      { length: Bn },
      (_, j) =>
        listed === null || listed.includes(j)
          ? null
          : new StoredSpan(ctx, `${strategy}: B block ${j}`, streams, {
            judge: { downsample },
            calibrator: null,
          }),
    );
    this.#stats.notes.push(...calibratorNotes(calibrator, streams.length, this.options.Bn > 0));
    const b: Buffers = {
      streams,
      residualF,
      referenceF,
      snapshotIn: copyCommand(`${strategy}: F input`, hidden, middle.imageInput),
      storeF: axpy(ctx, middle.imageInput, hidden, { alpha: -1, out: residualF }),
      diff: residualDiff(ctx, referenceF, residualF, { downsample }),
      keepReference: copyCommand(`${strategy}: keep R_F`, residualF, referenceF),
      middle,
      stored,
      gpu: null,
    };
    this.#buffers = b;
    // A static mask decides every step on the host, without measuring anything.
    if (this.options.mask !== null && this.options.steps_computation_policy === "static") return b;
    // DMD fits on the host after every computed step, so the host must know which steps computed.
    const path = calibratorNeedsHost(this.options.calibrator) ? "readback" : this.settings.path ??
      this.#sharedDiff?.path ??
      chooseDecisionPath(knownDecisionCosts(ctx), this.#demand(list, streams.length));
    this.#stats.decisions = path;
    if (path === "gpu") b.gpu = this.#decidedOnGpu(b, list, steps);
    return b;
  }

  /**
   * What a step costs on either path: the compute path's slots (keep R_F, the snapshots, M, the stores, and
   * each unlisted B block's) are empty in a cached step and run indirectly in a computed one; the readback
   * path reads the diff and, on a cached step, each unlisted B block's.
   */
  #demand(list: BlockList, streams: number): PathDemand {
    const { Fn, Bn, blocks } = this.options;
    const dispatches = (from: number, to: number) =>
      list.blocks.slice(from, to).reduce((sum, block) => sum + block.length, 0);
    const judged = this.#buffers!.stored.flatMap((s, j) => (s ? [blocks - Bn + j] : []));
    const compute = 1 + dispatches(Fn, blocks - Bn) + 2 * streams +
      judged.reduce((sum, i) => sum + dispatches(i, i + 1) + 2 * streams, 0);
    return { emptyDispatches: compute, indirectDispatches: compute, readbacks: 1 + judged.length };
  }

  /** The compute path (keep R_F, M's snapshots, M, its stores), the cached one, and each unlisted B block. */
  #decidedOnGpu(b: Buffers, list: BlockList, steps: number): Buffers["gpu"] {
    const { Fn, Bn, blocks } = this.options;
    const keepReference = copyByDispatch(this.ctx, b.residualF, b.referenceF);
    const span = b.middle.gpuSlots(list.blocks.slice(Fn, blocks - Bn).flat());
    const slots = [
      ...keepReference.dispatches.map((dispatch) => ({ dispatch, code: ON_COMPUTE })),
      ...span.snapshot,
      ...span.blocks,
      ...span.store,
      ...span.cached,
    ];
    const judged = b.stored.map((s, j): JudgedBlock | null => {
      if (!s) return null;
      const own = s.gpuSlots(list.blocks[blocks - Bn + j]);
      const runs = own.blocks.map(({ dispatch }) => ({ dispatch, code: SLOT.blockRuns }));
      return { diff: s.diff!, slots: [...own.snapshot, ...runs, ...own.store, ...own.cached] };
    });
    const derivatives = calibratorHistory(this.options.calibrator);
    const diff = this.#sharedDiff?.gpuDiff ?? b.diff;
    const options = { ...this.options, derivatives };
    return { span: new GpuDecidedSpan(this.ctx, diff, slots, judged, steps, options), keepReference };
  }
}
