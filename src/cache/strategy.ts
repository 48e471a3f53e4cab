// The seam between the sampler loop and the model's block list: a strategy decides, per forward pass, which
// blocks run. It sees only the graph's block commands and its token streams (`hidden`, and the others of a
// dual-stream model), never model internals, and it lives for one request (its state is per request, never
// module-global).
import type { Command } from "../gpu/kernel.ts";
import type { Decision, Gate } from "./decision.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { DecisionPath } from "./decision_path.ts";

export interface BlockList {
  /** Commands of each block; each updates every stream in place. */
  blocks: readonly Command[][];
  /** [batch, tokens, channels] image-token stream: every cache decision is measured on it. */
  hidden: Tensor;
  /**
   * Every token stream the blocks update, by name, `hidden` among them (FLUX: image and text); absent for
   * one-stream models. A strategy stores and replays each alongside `hidden`.
   */
  streams?: Readonly<Record<string, Tensor>>;
  /** TeaCache's probe: `commands` (the start of blocks[0]) leave its timestep-modulated image input in `tensor`. */
  modulatedInput?: ModulatedInput;
}

export interface ModulatedInput {
  commands: readonly Command[];
  tensor: Tensor;
}

/** The streams a strategy stores and replays: `hidden` first, then the list's others. */
export function blockStreams(list: BlockList): Tensor[] {
  const others = Object.values(list.streams ?? {}).filter((t) => t !== list.hidden);
  return [list.hidden, ...others];
}

/** A strategy's buffers are built for one graph: refuses a list whose streams are other tensors. */
export function checkStreams(strategy: string, prepared: readonly Tensor[], list: BlockList): void {
  const streams = blockStreams(list);
  if (streams.length !== prepared.length || streams.some((t, i) => t !== prepared[i])) {
    throw new Error(`${strategy}: the block list's streams changed within a request`);
  }
}

/** The pass of a step whose CFG halves run as separate forwards. */
export type CfgBranch = "cond" | "uncond";

export interface ForwardInfo {
  /** 0-based sampler step. */
  step: number;
  steps: number;
  /** The pass, where the pipeline runs CFG as two forwards per step; absent: the step's one forward. */
  branch?: CfgBranch;
  /**
   * Images in the forward (default 1): row r of each stream belongs to image r % images (CFG's halves are
   * stacked image by image), so a strategy may decide per image.
   */
  images?: number;
}

export interface ForwardReport {
  /** Blocks whose commands were encoded this forward. */
  blocksRun: number;
  /** True when the strategy reused cached results for part of the block list. */
  cached: boolean;
  /** The residual diff the decision was made on, when one was measured. */
  diff?: number;
  /** With separate CFG passes: the unconditional pass' report (the fields above are the conditional one's). */
  cfg?: ForwardReport;
}

/** One pass' step lists, as CacheStats holds them. */
export type BranchStats = Pick<CacheStats, "cachedSteps" | "computedSteps" | "diffs" | "gates">;

export interface CacheStats {
  strategy: string;
  /** Steps forwarded so far. */
  steps: number;
  cachedSteps: number[];
  computedSteps: number[];
  /** The decision's residual diff per step; null where a gate decided without one. */
  diffs: (number | null)[];
  /** The gate that decided each step. */
  gates: Gate[];
  blocksExecuted: number;
  /** Blocks a plain forward would have run over the same steps. */
  blocksTotal: number;
  /** GPU memory the cache holds (bytes). */
  memoryBytes: number;
  /** Readbacks the strategy made: mid-step ones (each a GPU sync) and reads of its decision log. */
  readbacks: number;
  /** How the decisions reached the host, where a strategy decides per step on measured values. */
  decisions?: DecisionPath;
  /** DBPrune: blocks pruned in each step. */
  prunedBlocks?: number[];
  /** DBPrune: pruned / total block executions so far. */
  prunedRatio?: number;
  /** DBPrune: each block's input diff per step; null where the block was not judged. */
  blockDiffs?: (number | null)[][];
  /** What option resolution changed (preset clamps). */
  notes: string[];
  /**
   * With separate CFG passes, the unconditional pass' steps (cache-dit's cfg_cached_steps); the step lists
   * above are then the conditional pass', the block counts, memory and readbacks the whole run's.
   */
  cfg?: BranchStats & { blocksExecuted: number; blocksTotal: number };
  /**
   * A forward of several images that decide apart: each image's own step lists (the lists above then count a
   * step as cached where no image ran the blocks).
   */
  images?: BranchStats[];
}

/** Stats before the first step; strategies fill them in as they forward. */
export function emptyStats(strategy: string, notes: readonly string[]): CacheStats {
  return {
    strategy,
    steps: 0,
    cachedSteps: [],
    computedSteps: [],
    diffs: [],
    gates: [],
    blocksExecuted: 0,
    blocksTotal: 0,
    memoryBytes: 0,
    readbacks: 0,
    notes: [...notes],
  };
}

/** Adds one forwarded step to `stats` and returns its report. */
export function recordStep(
  stats: CacheStats,
  step: number,
  decision: Decision,
  diff: number | null,
  blocksRun: number,
  blocks: number,
): ForwardReport {
  stats.steps++;
  (decision.cached ? stats.cachedSteps : stats.computedSteps).push(step);
  stats.diffs.push(diff);
  stats.gates.push(decision.gate);
  stats.blocksExecuted += blocksRun;
  stats.blocksTotal += blocks;
  return { blocksRun, cached: decision.cached, ...(diff === null ? {} : { diff }) };
}

export interface CacheStrategy {
  readonly name: string;
  /**
   * Encodes the step's blocks; null where the GPU decides the step (its report is in the decision log, which
   * settle() reads). Whether it returns null never depends on who reads the reports, or when.
   */
  forward(info: ForwardInfo, blocks: BlockList, recorder: StepRecorder): Promise<ForwardReport | null>;
  /**
   * The reports forward() left on the GPU since the last settle(), in step order ([] when none). Call it
   * after a step's submit: the log is copied behind that step, so the promise waits on that step only, and
   * the loop may encode and submit the next step before awaiting it (one readback per call).
   */
  settle(recorder: StepRecorder): Promise<ForwardReport[]>;
  /** Bytes of GPU memory the strategy holds for its caches. */
  memoryBytes(): number;
  /** What the strategy did so far in this request (returned with every image). */
  stats(): CacheStats;
  release(): void;
}

/** Every block, every step: the reference the others are measured against. */
export class NoCache implements CacheStrategy {
  readonly name = "none";
  readonly #computed: number[] = [];
  #blocks = 0;

  forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport> {
    for (const block of list.blocks) recorder.encode(block);
    if (info.branch !== "uncond") this.#computed.push(info.step);
    this.#blocks += list.blocks.length;
    return Promise.resolve({ blocksRun: list.blocks.length, cached: false });
  }

  settle(): Promise<ForwardReport[]> {
    return Promise.resolve([]);
  }

  stats(): CacheStats {
    return {
      strategy: "none",
      steps: this.#computed.length,
      cachedSteps: [],
      computedSteps: [...this.#computed],
      diffs: this.#computed.map(() => null),
      gates: [],
      blocksExecuted: this.#blocks,
      blocksTotal: this.#blocks,
      memoryBytes: 0,
      readbacks: 0,
      notes: [],
    };
  }

  memoryBytes(): number {
    return 0;
  }

  release(): void {}
}
