// DBCache and FBCache (cache-strategies.md): F = blocks[0, Fn) always runs and its residual R_F is compared
// with R_F* from the last computed step; a cached step replays M's stored residual instead of running M;
// B = the last Bn blocks runs every step (or, with Bn_compute_blocks_ids, only the listed ones and the
// others whose input barely moved). With the TaylorSeer calibrator a cached step extrapolates M's residual
// (or the hidden state after M) from the computed steps instead of replaying the last one.
// Decisions: when nobody waits on per-step reports and B has no per-block rule, the GPU decides
// (GpuDecidedSpan, TaylorSeer included) and the run reads its log once at the end; a static step mask is
// decided on the host without a readback; otherwise one counted readback per step for the diff (none when a
// gate before the threshold decides), and one per unlisted B block on cached steps.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, copyCommand, type Dispatch, disposeDispatches, isDispatch } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { axpy } from "../ops/axpy.ts";
import { type ResidualDiff, residualDiff } from "../ops/residual_diff.ts";
import type { ElementwiseOp } from "../ops/modulate.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import { calibratorLabel, calibratorNotes, TaylorSeer } from "./calibrators/taylor_seer.ts";
import { CacheDecision, type Decision, similar, stepGate } from "./decision.ts";
import { GpuDecidedSpan } from "./gpu_decided_span.ts";
import type { ResolvedDbCache } from "./options.ts";
import {
  type BlockList,
  type CacheStats,
  type CacheStrategy,
  emptyStats,
  type ForwardInfo,
  type ForwardReport,
  recordStep,
} from "./strategy.ts";

/** An unlisted B block: its input and residual at the last computed step. */
interface StoredBlock {
  input: Tensor;
  residual: Tensor;
  snapshot: Command;
  store: ElementwiseOp;
  diff: ResidualDiff;
  replay: ElementwiseOp;
}

interface Buffers {
  hidden: Tensor;
  tensors: Tensor[];
  snapshotIn: Command;
  residualF: ElementwiseOp;
  diff: ResidualDiff;
  keepReference: Command;
  snapshotM: Command;
  storeM: ElementwiseOp;
  replayM: ElementwiseOp;
  /** Per B block, null where it always runs. */
  stored: (StoredBlock | null)[];
  seer: TaylorSeer | null;
  /** Present when the GPU decides the steps (chosen on the first forward). */
  gpu: GpuDecidedSpan | null;
}

export class DbCache implements CacheStrategy {
  readonly name: string;
  readonly #decision: CacheDecision;
  #buffers: Buffers | null = null;
  readonly #stats: CacheStats;
  /** Steps forwarded in GPU-decided mode, awaiting settle(). */
  readonly #pending: number[] = [];

  constructor(private readonly ctx: GpuContext, private readonly options: ResolvedDbCache) {
    this.name = options.strategy;
    this.#decision = new CacheDecision(options);
    this.#stats = emptyStats(
      `${options.strategy} F${options.Fn}B${options.Bn}${calibratorLabel(options.taylorseer)}`,
      [...options.notes, ...calibratorNotes(options.taylorseer)],
    );
  }

  async forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport | null> {
    const b = this.#prepare(list, info);
    const { Fn } = this.options;
    recorder.encode([b.snapshotIn]);
    for (const block of list.blocks.slice(0, Fn)) recorder.encode(block);
    recorder.encode(b.residualF.dispatches);
    if (b.gpu) {
      this.#forwardDecidedOnGpu(b.gpu, info.step, list, recorder);
      return null;
    }
    let diff: number | null = null;
    if (this.#decision.needsDiff(info.step)) {
      recorder.encode(b.diff.dispatches);
      diff = await this.#read(recorder, b.diff.result);
    }
    const decision = this.#decision.decide(info.step, diff);
    const blocksRun = await this.#runPaths(decision, info.step, list, recorder);
    return recordStep(this.#stats, info.step, decision, diff, blocksRun, list.blocks.length);
  }

  /** Reports of the steps the GPU decided, from its log (one readback); [] when the host decided them. */
  async settle(recorder: StepRecorder): Promise<ForwardReport[]> {
    const gpu = this.#buffers?.gpu;
    if (!gpu) return [];
    const { Fn, Bn, blocks } = this.options;
    const logged = await gpu.settle(recorder);
    this.#stats.readbacks++;
    return this.#pending.splice(0).map((step) => {
      const { cached, diff, gate } = logged[step];
      return recordStep(this.#stats, step, { cached, gate }, diff, cached ? Fn + Bn : blocks, blocks);
    });
  }

  #forwardDecidedOnGpu(gpu: GpuDecidedSpan, step: number, list: BlockList, recorder: StepRecorder): void {
    // The first forward always computes (nothing is stored yet), so "computed before" = "forwarded before".
    const forwardedBefore = this.#pending.length > 0 || this.#stats.steps > 0;
    gpu.encode(step, stepGate(this.options, step, forwardedBefore), recorder);
    for (const block of list.blocks.slice(list.blocks.length - this.options.Bn)) recorder.encode(block);
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
    if (decision.cached && b.seer?.ready) {
      b.seer.approximate(step, recorder);
    } else if (decision.cached) {
      recorder.encode(b.replayM.dispatches);
    } else {
      recorder.encode([b.keepReference, b.snapshotM]);
      for (const block of list.blocks.slice(Fn, L - Bn)) recorder.encode(block);
      recorder.encode(b.storeM.dispatches);
      b.seer?.update(step, recorder);
      blocksRun += L - Fn - Bn;
    }
    return blocksRun + await this.#runB(list.blocks.slice(L - Bn), decision.cached, recorder);
  }

  stats(): CacheStats {
    return { ...this.#stats, memoryBytes: this.memoryBytes() };
  }

  memoryBytes(): number {
    const b = this.#buffers;
    if (!b) return 0;
    return b.tensors.reduce((sum, t) => sum + t.byteLength, 0) + (b.seer?.memoryBytes() ?? 0);
  }

  release(): void {
    const b = this.#buffers;
    if (!b) return;
    this.#buffers = null;
    for (const op of [b.residualF, b.diff, b.storeM, b.replayM]) op.release();
    b.seer?.release();
    b.gpu?.release();
    for (const s of b.stored) for (const op of [s?.store, s?.diff, s?.replay]) op?.release();
    disposeDispatches([
      b.snapshotIn,
      b.keepReference,
      b.snapshotM,
      ...b.stored.flatMap((s) => s ? [s.snapshot] : []),
    ]);
    for (const t of b.tensors) t.release();
  }

  /** B blocks; returns how many ran. On computed steps the unlisted ones also store input and residual. */
  async #runB(blocks: readonly Command[][], cached: boolean, recorder: StepRecorder): Promise<number> {
    const stored = this.#buffers!.stored;
    let run = 0;
    for (const [j, block] of blocks.entries()) {
      const s = stored[j];
      if (cached && s) {
        recorder.encode(s.diff.dispatches);
        const diff = await this.#read(recorder, s.diff.result);
        if (similar(diff, this.options.non_compute_blocks_diff_threshold)) {
          recorder.encode(s.replay.dispatches);
          continue;
        }
      }
      const storing = !cached && s;
      if (storing) recorder.encode([s.snapshot]);
      recorder.encode(block);
      if (storing) recorder.encode(s.store.dispatches);
      run++;
    }
    return run;
  }

  async #read(recorder: StepRecorder, result: Tensor): Promise<number> {
    this.#stats.readbacks++;
    return (await recorder.read(result))[0];
  }

  /** Buffers and dispatches are built once, on the first forward, for the request's `hidden`. */
  #prepare(list: BlockList, info: ForwardInfo): Buffers {
    const { blocks, Bn, strategy } = this.options;
    if (list.blocks.length !== blocks) {
      throw new Error(
        `${strategy}: options were resolved for ${blocks} blocks, the model has ${list.blocks.length}`,
      );
    }
    if (this.#buffers) {
      if (this.#buffers.hidden !== list.hidden) {
        throw new Error(`${strategy}: hidden changed within a request`);
      }
      return this.#buffers;
    }
    const { ctx } = this;
    const hidden = list.hidden;
    const tensors: Tensor[] = [];
    const tensor = () => {
      const t = ctx.pool.tensor(hidden.shape);
      tensors.push(t);
      return t;
    };
    const downsample = this.options.downsample_factor;
    // scratch holds F's input, then M's input: each is consumed by the axpy right after its span.
    const [scratch, residualF, referenceF, residualM] = [tensor(), tensor(), tensor(), tensor()];
    const calibrator = this.options.taylorseer;
    const residual = calibrator?.cache_type === "residual";
    const listed = this.options.Bn_compute_blocks_ids;
    const stored = Array.from({ length: Bn }, (_, j): StoredBlock | null => {
      if (listed === null || listed.includes(j)) return null;
      const input = tensor();
      const residual = tensor();
      return {
        input,
        residual,
        snapshot: copyCommand(`${strategy}: B block ${j} input`, hidden, input),
        store: axpy(ctx, input, hidden, { alpha: -1, out: residual }),
        diff: residualDiff(ctx, input, hidden, { downsample }),
        replay: axpy(ctx, residual, hidden, { alpha: 1, inPlace: true }),
      };
    });
    this.#buffers = {
      hidden,
      tensors,
      snapshotIn: copyCommand(`${strategy}: F input`, hidden, scratch),
      residualF: axpy(ctx, scratch, hidden, { alpha: -1, out: residualF }),
      diff: residualDiff(ctx, referenceF, residualF, { downsample }),
      keepReference: copyCommand(`${strategy}: keep R_F`, residualF, referenceF),
      snapshotM: copyCommand(`${strategy}: M input`, hidden, scratch),
      storeM: axpy(ctx, scratch, hidden, { alpha: -1, out: residualM }),
      replayM: axpy(ctx, residualM, hidden, { alpha: 1, inPlace: true }),
      stored,
      seer: calibrator && new TaylorSeer(ctx, {
        source: residual ? residualM : hidden,
        target: hidden,
        mode: residual ? "add" : "replace",
        nDerivatives: calibrator.n_derivatives,
      }),
      gpu: null,
    };
    const b = this.#buffers;
    const middle = list.blocks.slice(this.options.Fn, blocks - Bn).flat();
    // The GPU decides unless a static mask already decides every step on the host, B has a per-block rule (a
    // host reaction mid-step) or the middle holds a copy (copies cannot be skipped).
    const hostDecidesAll = this.options.mask !== null && this.options.steps_computation_policy === "static";
    if (
      info.deferReport && !hostDecidesAll && listed === null && middle.length > 0 && middle.every(isDispatch)
    ) {
      b.gpu = new GpuDecidedSpan(
        ctx,
        b.diff,
        {
          copies: [[residualF, referenceF], [hidden, scratch]],
          compute: [...middle as Dispatch[], ...b.storeM.dispatches],
          cached: b.replayM.dispatches,
          seer: b.seer,
        },
        info.steps,
        { ...this.options, derivatives: calibrator?.n_derivatives ?? 0 },
      );
    }
    return this.#buffers;
  }
}
