// The seam between the sampler loop and the model's block list: a strategy decides, per forward pass, which
// blocks run. It sees only the graph's block commands and its `hidden` stream, never model internals, and
// it lives for one request (its state is per request, never module-global).
import type { Command } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { StepRecorder } from "../pipeline/step_recorder.ts";

export interface BlockList {
  /** Commands of each block; each updates `hidden` in place. */
  blocks: readonly Command[][];
  /** [batch, tokens, channels] image-token stream. */
  hidden: Tensor;
}

export interface ForwardInfo {
  /** 0-based sampler step. */
  step: number;
  steps: number;
}

export interface ForwardReport {
  /** Blocks whose commands were encoded this forward. */
  blocksRun: number;
  /** True when the strategy reused cached results for part of the block list. */
  cached: boolean;
  /** The residual diff the decision was made on, when one was measured. */
  diff?: number;
}

export interface CacheStrategy {
  readonly name: string;
  forward(info: ForwardInfo, blocks: BlockList, recorder: StepRecorder): Promise<ForwardReport>;
  /** Bytes of GPU memory the strategy holds for its caches. */
  memoryBytes(): number;
  release(): void;
}

/** Every block, every step: the reference the others are measured against. */
export class NoCache implements CacheStrategy {
  readonly name = "none";

  forward(_info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport> {
    for (const block of list.blocks) recorder.encode(block);
    return Promise.resolve({ blocksRun: list.blocks.length, cached: false });
  }

  memoryBytes(): number {
    return 0;
  }

  release(): void {}
}
