// The strategies that skip the whole block list (MagCache, TeaCache, EasyCache): a computed step stores what
// the list added to each stream; a skipped step adds that residual instead of running any block. Which steps
// skip is a rule's (src/cache/magcache.ts, teacache.ts, easycache.ts), and the rule is the CPU reference of
// its own decision. Each image of a batched forward has its own rule: when they disagree, the blocks run
// for the whole batch and the images that skip get their rows replayed (src/cache/image_rows.ts), so one
// image's decision never changes another's result. What a rule measures is taken on the GPU per row as
// (mean|a - b|, mean|a|) pairs and gathered in one small tensor, read once when a rule needs it (MagCache
// reads nothing):
//   modulated_input: the first block's timestep-modulated input against the previous step's (TeaCache);
//   input: the list's image input against the previous step's, and after each computed step its output
//     against the previous computed output and its input against that step's input (EasyCache).
import type { GpuContext } from "../gpu/context.ts";
import { type Command, type CopyCommand, copyCommand, disposeDispatches } from "../gpu/kernel.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type ResidualDiff, residualDiff } from "../ops/residual_diff.ts";
import type { Decision } from "./decision.ts";
import type { ComputedMeasures } from "./easycache.ts";
import { chooseDecisionPath, type DecisionPath, knownDecisionCosts } from "./decision_path.ts";
import { ImageRows } from "./image_rows.ts";
import { type StreamStore, streamStore } from "./stored_stream.ts";
import type { WholeListRuleOptions } from "./kernels/whole_list_decision.ts";
import { GpuDecidedList } from "./whole_list_gpu_path.ts";
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

/** Slots of the measures tensor, each [1 + rows, 2]. */
const MEASURE = { step: 0, output: 1, input: 2 } as const;

/** A measure of `current` against what it was when last kept, and the copy that keeps it. */
interface Tracked {
  kept: Tensor;
  /** False where `kept` is another's tensor (the stored input). */
  ownsKept: boolean;
  diff: ResidualDiff;
  gather: CopyCommand;
  keep: CopyCommand;
}

interface Buffers {
  streams: StreamStore[];
  /** Blocks in the list. */
  blocks: number;
  rows: ImageRows;
  measures: Tensor;
  /** Before the decision: the probe commands that make a modulated input, and the rule's step measure. */
  before: Command[];
  step: Tracked | null;
  /** EasyCache, around the blocks of a computed step: the input against the last computed one, the output
   * against the last computed output. */
  computed: { input: Tracked; output: Tracked } | null;
  /** Present on the GPU path. */
  gpu: GpuDecidedList | null;
}

export interface WholeListSettings {
  /** The rule as the GPU decision kernel takes it; absent: the host decides (MagCache decides from its
   * calibration alone, without a measure to wait for). */
  gpuRule?: WholeListRuleOptions;
  /** The decision path; absent, the adapter's choice (chooseDecisionPath). A batch always takes readback. */
  path?: DecisionPath;
}

/** One image's rule and what it has seen. */
interface ImageState {
  rule: ListRule;
  computedSteps: number;
  /** A computed step whose measures the rule has not been given yet. */
  unread: boolean;
  stats: CacheStats;
}

export class WholeListCache implements CacheStrategy {
  readonly #stats: CacheStats;
  #buffers: Buffers | null = null;
  #images: ImageState[] = [];
  /** Steps forwarded on the GPU path, awaiting settle(). */
  readonly #pending: number[] = [];
  /** The settle() reads in flight, in order: each records its steps after the one before. */
  #settled: Promise<ForwardReport[]> = Promise.resolve([]);

  constructor(
    private readonly ctx: GpuContext,
    readonly name: string,
    private readonly makeRule: () => ListRule,
    private readonly label: string,
    private readonly notes: readonly string[],
    private readonly settings: WholeListSettings = {},
  ) {
    this.#stats = emptyStats(label, notes);
  }

  async forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport | null> {
    const b = this.#prepare(list, info.images ?? 1, info.steps);
    recorder.encode(b.before);
    if (b.gpu) {
      b.gpu.encode(info.step, recorder);
      this.#pending.push(info.step);
      return null;
    }
    const wanted = b.step !== null && this.#images.some((s) => s.rule.wants(info.step, s.computedSteps));
    const measured = wanted ? await this.#read(recorder) : null;
    const decisions = this.#images.map((s, i) => {
      const d = s.rule.decide(info.step, measured?.[i] ?? null);
      if (d.cached && s.computedSteps === 0) {
        throw new Error(`${this.name}: the rule skipped step ${info.step} before any step computed`);
      }
      return d;
    });
    const computing = decisions.flatMap((d, i) => d.cached ? [] : [i]);
    if (computing.length === 0) {
      for (const s of b.streams) recorder.encode(s.replay.dispatches);
    } else {
      this.#compute(b, list, computing, recorder);
    }
    decisions.forEach((d, i) => {
      const image = this.#images[i];
      if (!d.cached) image.computedSteps++;
      recordStep(image.stats, info.step, d, d.diff, d.cached ? 0 : list.blocks.length, list.blocks.length);
    });
    // The request's own account: a step is cached where no image ran the blocks.
    const whole = computing.length === 0 ? decisions[0] : decisions.find((d) => !d.cached)!;
    const blocksRun = computing.length === 0 ? 0 : list.blocks.length;
    return recordStep(this.#stats, info.step, whole, whole.diff, blocksRun, list.blocks.length);
  }

  /** The blocks for the whole batch; images that skip this step get their rows replayed. */
  #compute(b: Buffers, list: BlockList, computing: readonly number[], recorder: StepRecorder): void {
    const mixed = computing.length < this.#images.length;
    if (b.computed) recorder.encode([...b.computed.input.diff.dispatches, b.computed.input.gather]);
    if (mixed) recorder.encode(b.streams.flatMap((s) => s.replayed.dispatches));
    recorder.encode(
      mixed ? b.rows.copies(b.streams, "snapshot", computing) : b.streams.map((s) => s.snapshot),
    );
    for (const block of list.blocks) recorder.encode(block);
    if (mixed) {
      recorder.encode(b.streams.flatMap((s) => s.fresh.dispatches));
      recorder.encode(b.rows.copies(b.streams, "store", computing));
    } else {
      recorder.encode(b.streams.flatMap((s) => s.store.dispatches));
    }
    if (b.computed) {
      const { output } = b.computed;
      recorder.encode([...output.diff.dispatches, output.gather]);
      recorder.encode(mixed ? b.rows.keepRows(output.kept, list.hidden, computing) : [output.keep]);
      for (const i of computing) this.#images[i].unread = true;
    }
    if (mixed) recorder.encode(b.rows.copies(b.streams, "replay", b.rows.others(computing)));
  }

  /** Each image's step measure, after giving each rule what its last computed step measured. */
  async #read(recorder: StepRecorder): Promise<MeanPair[]> {
    this.#stats.readbacks++;
    const b = this.#buffers!;
    const m = await recorder.read(b.measures);
    const pairs = (slot: number) =>
      b.rows.perImage(m.subarray(slot * 2 * b.rows.slotRows, (slot + 1) * 2 * b.rows.slotRows));
    const [output, input] = [pairs(MEASURE.output), pairs(MEASURE.input)];
    this.#images.forEach((s, i) => {
      if (!s.unread) return;
      s.rule.computed?.({ output: output[i], input: input[i] }, s.computedSteps === 1);
      s.unread = false;
    });
    return pairs(MEASURE.step);
  }

  /** Reports of the steps the GPU decided since the last call, from its log (one readback); [] when none. */
  settle(recorder: StepRecorder): Promise<ForwardReport[]> {
    const gpu = this.#buffers?.gpu;
    if (!gpu || this.#pending.length === 0) return Promise.resolve([]);
    const steps = this.#pending.splice(0);
    const read = gpu.settle(recorder);
    this.#stats.readbacks++;
    const blocks = this.#buffers!.blocks;
    this.#settled = this.#settled.then(async () => {
      const logged = await read;
      return steps.map((step) => {
        const { cached, gate, diff } = logged[step];
        const run = cached ? 0 : blocks;
        recordStep(this.#images[0].stats, step, { cached, gate }, diff, run, blocks);
        return recordStep(this.#stats, step, { cached, gate }, diff, run, blocks);
      });
    });
    return this.#settled;
  }

  stats(): CacheStats {
    const images = this.#images.length > 1
      ? {
        images: this.#images.map(({ stats: s }) => ({
          cachedSteps: s.cachedSteps,
          computedSteps: s.computedSteps,
          diffs: s.diffs,
          gates: s.gates,
        })),
      }
      : {};
    return { ...this.#stats, memoryBytes: this.memoryBytes(), ...images };
  }

  memoryBytes(): number {
    const b = this.#buffers;
    if (!b) return 0;
    const tracked = [b.step, b.computed?.input, b.computed?.output];
    return b.streams.reduce((sum, s) => sum + s.memoryBytes(), 0) + b.measures.byteLength +
      tracked.reduce((sum, t) => sum + (t?.ownsKept ? t.kept.byteLength : 0), 0);
  }

  release(): void {
    const b = this.#buffers;
    if (!b) return;
    this.#buffers = null;
    for (const t of [b.step, b.computed?.input, b.computed?.output]) {
      if (!t) continue;
      t.diff.release();
      disposeDispatches([t.gather, t.keep]);
      if (t.ownsKept) t.kept.release();
    }
    b.gpu?.release();
    for (const s of b.streams) s.release();
    b.measures.release();
  }

  #prepare(list: BlockList, images: number, steps: number): Buffers {
    if (this.#buffers) {
      checkStreams(this.name, this.#buffers.streams.map((s) => s.stream), list);
      if (images !== this.#images.length) {
        throw new Error(
          `${this.name}: ${images} images in a forward of a request that began with ${this.#images.length}`,
        );
      }
      return this.#buffers;
    }
    const { ctx, name } = this;
    const rows = new ImageRows(list.hidden.shape[0], images);
    this.#images = Array.from({ length: images }, () => ({
      rule: this.makeRule(),
      computedSteps: 0,
      unread: false,
      stats: emptyStats(this.label, this.notes),
    }));
    const streams = blockStreams(list).map((stream, i) =>
      streamStore(ctx, `${name}: stream ${i}`, stream, images)
    );
    const measures = ctx.pool.upload(new Float32Array(3 * 2 * rows.slotRows), [3, rows.slotRows, 2]);
    // The pair's mean|a| is the kept reference's, or with currentFirst the current tensor's.
    const track = (
      current: Tensor,
      slot: number,
      o: { kept?: Tensor; currentFirst?: boolean } = {},
    ): Tracked => {
      const reference = o.kept ?? ctx.pool.tensor(current.shape);
      const samples = { samples: rows.rows };
      const diff = o.currentFirst
        ? residualDiff(ctx, current, reference, samples)
        : residualDiff(ctx, reference, current, samples);
      const bytes = diff.means.byteLength;
      return {
        kept: reference,
        ownsKept: !o.kept,
        diff,
        gather: copyCommand(`${name}: measure ${slot}`, diff.means, measures, {
          dstOffset: slot * bytes,
          bytes,
        }),
        keep: copyCommand(`${name}: keep measured`, current, reference),
      };
    };
    let before: Command[] = [];
    let step: Tracked | null = null;
    const rule = this.#images[0].rule;
    if (rule.measures === "modulated_input") {
      const probe = list.modulatedInput;
      if (!probe) {
        throw new Error(`${name}: this model's block list exposes no timestep-modulated input to measure`);
      }
      step = track(probe.tensor, MEASURE.step);
      before = [...probe.commands, ...step.diff.dispatches, step.gather, step.keep];
    } else if (rule.measures === "input") {
      step = track(list.hidden, MEASURE.step);
      before = [...step.diff.dispatches, step.gather, step.keep];
    }
    // EasyCache: the image stream's stored input is each image's last computed input, until its snapshot.
    const computed = rule.computed
      ? {
        input: track(list.hidden, MEASURE.input, { kept: streams[0].input }),
        output: track(list.hidden, MEASURE.output, { currentFirst: true }),
      }
      : null;
    const parts = { streams, rows, measures, before, step, computed, blocks: list.blocks.length };
    this.#buffers = { ...parts, gpu: this.#gpuPath(parts, list, images, steps) };
    return this.#buffers;
  }

  /** The GPU path where this request takes it: one image, a rule the kernel decides, the adapter's choice. */
  #gpuPath(
    parts: Omit<Buffers, "gpu">,
    list: BlockList,
    images: number,
    steps: number,
  ): GpuDecidedList | null {
    const rule = this.settings.gpuRule;
    const demand = { emptyDispatches: list.blocks.flat().length + 2 * parts.streams.length, readbacks: 1 };
    const path = !rule || images > 1
      ? "readback"
      : this.settings.path ?? chooseDecisionPath(knownDecisionCosts(this.ctx), demand);
    this.#stats.decisions = path;
    if (path === "readback" || !rule) return null;
    const c = parts.computed;
    return new GpuDecidedList(
      this.ctx,
      {
        streams: parts.streams,
        measures: parts.measures,
        hidden: list.hidden,
        computed: c && { input: c.input, output: c.output },
      },
      list.blocks,
      steps,
      rule,
    );
  }
}
