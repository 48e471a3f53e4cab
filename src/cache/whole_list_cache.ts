// The strategies that skip the whole block list (MagCache, TeaCache, EasyCache): a computed step stores what
// the list added to each stream; a skipped step adds that residual instead of running any block. Which steps
// skip is a rule's (src/cache/magcache.ts, teacache.ts, easycache.ts), and the rule is the CPU reference of
// its own decision. What a rule measures is taken on the GPU as (mean|a - b|, mean|a|) pairs and gathered in
// one small tensor, so a step that needs a measure reads 24 bytes once (MagCache reads nothing):
//   modulated_input: the first block's timestep-modulated input against the previous step's (TeaCache);
//   input: the list's image input against the previous step's, and after each computed step its output
//     against the previous computed output and its input against that step's input (EasyCache).
import type { GpuContext } from "../gpu/context.ts";
import { type Command, copyCommand, disposeDispatches } from "../gpu/kernel.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type ResidualDiff, residualDiff } from "../ops/residual_diff.ts";
import type { Decision } from "./decision.ts";
import type { ComputedMeasures } from "./easycache.ts";
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

/** (mean|a - b|, mean|a|). */
export type MeanPair = [number, number];

export interface ListRule {
  readonly measures: "none" | "modulated_input" | "input";
  /** Whether decide(step) reads the measure, `computed` steps after the run began (no readback otherwise). */
  wants(step: number, computed: number): boolean;
  /** `measured`: this step's measure against the previous step's; null where wants() said no. */
  decide(step: number, measured: MeanPair | null): Decision & { diff: number | null };
  /** EasyCache: what a computed step measured, given before the next decision. */
  computed?(measures: ComputedMeasures, first: boolean): void;
}

/** Slots of the measures tensor, each a MeanPair. */
const MEASURE = { step: 0, output: 1, input: 2 } as const;

/** A measure of `current` against what it was when last kept, and the copy that keeps it. */
interface Tracked {
  kept: Tensor;
  /** False where `kept` is another's tensor (the span's stored input). */
  ownsKept: boolean;
  diff: ResidualDiff;
  gather: Command;
  keep: Command;
}

interface Buffers {
  streams: Tensor[];
  span: StoredSpan;
  measures: Tensor;
  /** Before the decision: the rule's step measure, and the probe commands that make a modulated input. */
  before: Command[];
  step: Tracked | null;
  /** EasyCache, around the blocks of a computed step: the input against the last computed one, the output
   * against the last computed output. */
  computed: { input: Tracked; output: Tracked } | null;
}

export class WholeListCache implements CacheStrategy {
  readonly #stats: CacheStats;
  #buffers: Buffers | null = null;
  #computedSteps = 0;
  /** A computed step whose measures the rule has not been given yet. */
  #unread = false;

  constructor(
    private readonly ctx: GpuContext,
    readonly name: string,
    private readonly rule: ListRule,
    label: string,
    notes: readonly string[],
  ) {
    this.#stats = emptyStats(label, notes);
  }

  async forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport> {
    const b = this.#prepare(list);
    recorder.encode(b.before);
    const measured = b.step && this.rule.wants(info.step, this.#computedSteps)
      ? await this.#read(recorder)
      : null;
    const decision = this.rule.decide(info.step, measured);
    if (decision.cached && this.#computedSteps === 0) {
      throw new Error(`${this.name}: the rule skipped step ${info.step} before any step computed`);
    }
    if (decision.cached) {
      b.span.reuse(info.step, recorder);
    } else {
      if (b.computed) recorder.encode([...b.computed.input.diff.dispatches, b.computed.input.gather]);
      recorder.encode(b.span.snapshot);
      for (const block of list.blocks) recorder.encode(block);
      recorder.encode(b.span.store);
      if (b.computed) {
        const { output } = b.computed;
        recorder.encode([...output.diff.dispatches, output.gather, output.keep]);
        this.#unread = true;
      }
      this.#computedSteps++;
    }
    const blocksRun = decision.cached ? 0 : list.blocks.length;
    return recordStep(this.#stats, info.step, decision, decision.diff, blocksRun, list.blocks.length);
  }

  /** The step measure, and first what the last computed step measured when the rule has not seen it. */
  async #read(recorder: StepRecorder): Promise<MeanPair> {
    this.#stats.readbacks++;
    const m = await recorder.read(this.#buffers!.measures);
    const pair = (slot: number): MeanPair => [m[2 * slot], m[2 * slot + 1]];
    if (this.#unread) {
      this.rule.computed?.(
        { output: pair(MEASURE.output), input: pair(MEASURE.input) },
        this.#computedSteps === 1,
      );
      this.#unread = false;
    }
    return pair(MEASURE.step);
  }

  settle(): Promise<ForwardReport[]> {
    return Promise.resolve([]);
  }

  stats(): CacheStats {
    return { ...this.#stats, memoryBytes: this.memoryBytes() };
  }

  memoryBytes(): number {
    const b = this.#buffers;
    if (!b) return 0;
    const tracked = [b.step, b.computed?.input, b.computed?.output];
    return b.span.memoryBytes() + b.measures.byteLength +
      tracked.reduce((sum, t) => sum + (t?.ownsKept ? t.kept.byteLength : 0), 0);
  }

  release(): void {
    const b = this.#buffers;
    if (!b) return;
    this.#buffers = null;
    b.span.release();
    for (const t of [b.step, b.computed?.input, b.computed?.output]) {
      if (!t) continue;
      t.diff.release();
      disposeDispatches([t.gather, t.keep]);
      if (t.ownsKept) t.kept.release();
    }
    b.measures.release();
  }

  #prepare(list: BlockList): Buffers {
    if (this.#buffers) {
      checkStreams(this.name, this.#buffers.streams, list);
      return this.#buffers;
    }
    const { ctx, rule } = this;
    const streams = blockStreams(list);
    const span = new StoredSpan(ctx, `${this.name}: blocks`, streams, { calibrator: null });
    const measures = ctx.pool.upload(new Float32Array(6), [3, 2]);
    // The pair's mean|a| is the kept reference's, or with currentFirst the current tensor's.
    const track = (
      current: Tensor,
      slot: number,
      o: { kept?: Tensor; currentFirst?: boolean } = {},
    ): Tracked => {
      const reference = o.kept ?? ctx.pool.tensor(current.shape);
      const diff = o.currentFirst
        ? residualDiff(ctx, current, reference)
        : residualDiff(ctx, reference, current);
      return {
        kept: reference,
        ownsKept: !o.kept,
        diff,
        gather: copyCommand(`${this.name}: measure ${slot}`, diff.means, measures, {
          dstOffset: 8 * slot,
          bytes: 8,
        }),
        keep: copyCommand(`${this.name}: keep measured`, current, reference),
      };
    };
    let before: Command[] = [];
    let step: Tracked | null = null;
    if (rule.measures === "modulated_input") {
      const probe = list.modulatedInput;
      if (!probe) {
        throw new Error(
          `${this.name}: this model's block list exposes no timestep-modulated input to measure`,
        );
      }
      step = track(probe.tensor, MEASURE.step);
      before = [...probe.commands, ...step.diff.dispatches, step.gather, step.keep];
    } else if (rule.measures === "input") {
      step = track(list.hidden, MEASURE.step);
      before = [...step.diff.dispatches, step.gather, step.keep];
    }
    // EasyCache: the span's stored input is the last computed step's, until this step's snapshot.
    const computed = rule.computed
      ? {
        input: track(list.hidden, MEASURE.input, { kept: span.imageInput }),
        output: track(list.hidden, MEASURE.output, { currentFirst: true }),
      }
      : null;
    this.#buffers = { streams, span, measures, before, step, computed };
    return this.#buffers;
  }
}
