// What every denoising transformer builds for a batch: every tensor and dispatch of one forward pass,
// allocated once, so that a step only writes its inputs and encodes commands. The transformer is exposed as
// prologue -> blocks[0..L) -> epilogue, each block updating `hidden` in place: the block list a cache strategy
// wraps (src/cache/strategy.ts) without the model knowing which strategy runs it.
import type { Command } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";

export interface DenoiserGraph {
  batch: number;
  /** Model input in the pipeline's latent layout ([batch, C, H, W], FLUX's packed [batch, N, 4C], or a video's
   * [batch, C, F, H, W]). */
  x: Tensor;
  /** [batch] f32 timestep in the model's own units (sigma in [0, 1], or a train timestep 0..999). */
  t: Tensor;
  /** [batch] u32 class ids, for class-conditional models. */
  labels?: Tensor;
  /** Conditioning written once per request, by diffusers' argument names (encoder_hidden_states, ...). */
  inputs?: Record<string, Tensor>;
  /** Image-token stream [batch, tokens, hidden], updated in place by every block. */
  hidden: Tensor;
  /** Every token stream the blocks update, by name (image is `hidden`); absent for one-stream models. */
  streams?: Record<string, Tensor>;
  /** The first block's timestep-modulated image input and the commands (the start of blocks[0]) that make it. */
  modulatedInput?: { commands: Command[]; tensor: Tensor };
  prologue: Command[];
  blocks: Command[][];
  epilogue: Command[];
  /** Model output in the input's layout ([batch, C_out, H, W], or [batch, C_out, F, H, W] for video). */
  output: Tensor;
  /** Intermediate tensors that reference fixtures record, by their stage names (read after the epilogue). */
  stages?: Record<string, Tensor>;
  release(): void;
}

/** The graph of a class-conditional model: its labels are always there. */
export type ClassConditionalGraph = DenoiserGraph & { labels: Tensor };

/**
 * TeaCache's probe from a block's commands: the prefix that ends with `norm`'s dispatches (the block's first
 * timestep-modulated norm of the image stream) and the tensor it writes.
 */
export function modulatedInputOf(
  block: readonly Command[],
  norm: { dispatches: readonly Command[]; out: Tensor },
): { commands: Command[]; tensor: Tensor } {
  const end = block.indexOf(norm.dispatches[norm.dispatches.length - 1]);
  if (end < 0) throw new Error("modulatedInputOf: the norm's dispatches are not in the block");
  return { commands: block.slice(0, end + 1), tensor: norm.out };
}
