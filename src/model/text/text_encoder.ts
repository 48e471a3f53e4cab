// What the text encoders share. A graph is built once per (batch, length): every tensor and dispatch of a
// forward pass, so that a prompt only writes its token ids and encodes commands. It runs embeddings ->
// layers[0..L) -> final, each layer updating `hidden` in place, so that a fixture can be compared after every
// stage. Token ids arrive from the tokenizer as [batch, length] rows and are checked against the vocabulary.
import type { GpuContext } from "../../gpu/context.ts";
import type { Command } from "../../gpu/kernel.ts";
import type { Tensor } from "../../gpu/tensor.ts";

/** transformers' file stem: `model.safetensors` or `model.safetensors.index.json`. */
export const TRANSFORMERS_STEM = "model";

export interface TextEncoderGraph {
  batch: number;
  length: number;
  /** u32 [batch * length], written by the model's writeInputIds. */
  inputIds: Tensor;
  /** [batch, length, hidden], updated in place by every layer. */
  hidden: Tensor;
  embeddings: Command[];
  layers: Command[][];
  /** The final norm (and CLIP's pooling). */
  final: Command[];
  /** [batch, length, hidden]: the final norm of `hidden`. */
  lastHiddenState: Tensor;
  release(): void;
}

/** A whole forward pass in order: the embeddings, every layer, the final norm. */
export function forwardCommands(graph: TextEncoderGraph): Command[] {
  return [...graph.embeddings, ...graph.layers.flat(), ...graph.final];
}

/** Token ids a model cannot take: the message names the model, the position and the allowed range. */
export class TextEncoderInputError extends Error {
  constructor(model: string, message: string) {
    super(`${model}: ${message}`);
    this.name = "TextEncoderInputError";
  }
}

/** Graphs are built per input shape: both must be positive integers. */
export function checkGraphShape(model: string, batch: number, length: number): void {
  if (![batch, length].every((n) => Number.isInteger(n) && n > 0)) {
    throw new TextEncoderInputError(model, `batch ${batch} and length ${length} must be positive integers`);
  }
}

/**
 * Writes input_ids [batch, length] (row-major) into the graph after checking their count and that every id
 * lies in the vocabulary 0..vocab-1 (an id outside it would read another row of the table, or none).
 */
export function writeTokenIds(
  ctx: GpuContext,
  model: string,
  graph: Pick<TextEncoderGraph, "batch" | "length" | "inputIds">,
  ids: Uint32Array,
  vocab: number,
): void {
  const { batch, length } = graph;
  if (ids.length !== batch * length) {
    throw new TextEncoderInputError(
      model,
      `input_ids hold ${ids.length} ids, the graph takes [batch ${batch}, length ${length}] = ${
        batch * length
      }`,
    );
  }
  const bad = ids.findIndex((id) => id >= vocab);
  if (bad >= 0) {
    throw new TextEncoderInputError(
      model,
      `input_ids[${Math.floor(bad / length)}, ${bad % length}] = ${ids[bad]} is outside the vocabulary ` +
        `0..${vocab - 1} (vocab_size ${vocab})`,
    );
  }
  ctx.pool.write(graph.inputIds, ids);
}
