// WanPipeline's encode_prompt (_get_t5_prompt_embeds): each prompt cleaned (prompt_clean,
// src/pipeline/text/wan_prompt_clean.ts), tokenized with </s>, truncated and padded to max_sequence_length,
// run through UMT5EncoderModel with its attention mask, and its last hidden state kept for the real tokens
// only: the rows past them are zeros, as the pipeline trims each prompt to its length and pads it back with
// zeros. The tokenizer and encoder load together, on the first prompt (the caller decides when), not with the
// transformer. A repeated prompt reuses its embeddings from a small LRU and costs no encoder work, also while
// its first pass is still running.
//
// Each prompt is its own batch-1 pass over one [1, max_sequence_length] graph: the mask is the prompt's length,
// folded into that row's score bias (src/model/text/t5_encoder.ts). The real rows come out as transformers'
// batched, masked forward gives them; the padding rows, which it computes too, are zeroed anyway.
import { LRUCache } from "lru-cache";
import type { GpuContext } from "../../gpu/context.ts";
import { submitDispatches } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import { parseConfig, readJsonFile } from "../../model/component_config.ts";
import type { Float32Tensor } from "../../model/safetensors.ts";
import { umt5ConfigSchema } from "../../model/text/config.ts";
import { T5Encoder } from "../../model/text/t5_encoder.ts";
import { forwardCommands } from "../../model/text/text_encoder.ts";
import { PromptTokenizer } from "../../model/text/tokenizer.ts";
import { truncationNotes } from "./truncation.ts";
import { cleanPrompt } from "./wan_prompt_clean.ts";

/** WanPipeline.__call__'s max_sequence_length. */
export const WAN_MAX_SEQUENCE_LENGTH = 512;
/** Prompts whose embeddings are kept (umT5-XXL at 512 tokens: 8 MiB each). */
const REMEMBERED_PROMPTS = 16;

export interface WanPromptEmbeds {
  /** [prompts, max_sequence_length, d_model]; zero after each prompt's tokens (with its </s>). */
  promptEmbeds: Float32Tensor;
  /** What truncation dropped, one note per truncated prompt. */
  notes: string[];
}

/** One prompt's rows: [max_sequence_length, d_model]. */
interface EncodedRow {
  data: Float32Array;
  notes: string[];
}

export class WanPromptEncoder {
  readonly #remembered = new LRUCache<string, Promise<EncodedRow>>({ max: REMEMBERED_PROMPTS });
  /** Encoder passes run (a remembered prompt runs none). */
  encodes = 0;

  private constructor(
    private readonly ctx: GpuContext,
    private readonly tokenizer: PromptTokenizer,
    private readonly encoder: T5Encoder,
  ) {}

  /**
   * A Wan directory's `text_encoder/` (UMT5EncoderModel: config.json, model.safetensors) and `tokenizer/`
   * (tokenizer.json and its configs). Errors are WeightsErrors naming the file.
   */
  static async load(
    ctx: GpuContext,
    textEncoderDir: string,
    tokenizerDir: string,
  ): Promise<WanPromptEncoder> {
    const configPath = `${textEncoderDir}/config.json`;
    const config = parseConfig(configPath, await readJsonFile(configPath), umt5ConfigSchema);
    const tokenizer = await PromptTokenizer.load(tokenizerDir, "t5");
    const encoder = await T5Encoder.load(ctx, textEncoderDir, config);
    return new WanPromptEncoder(ctx, tokenizer, encoder);
  }

  /** d_model: the width of each embedding row (the transformer's text_dim). */
  get width(): number {
    return this.encoder.config.d_model;
  }

  /** The prompts' embeddings [prompts, maxSequenceLength, d_model], in order. */
  async encode(prompts: string[], maxSequenceLength = WAN_MAX_SEQUENCE_LENGTH): Promise<WanPromptEmbeds> {
    if (prompts.length === 0) throw new RangeError("prompts is empty: give at least one prompt");
    if (!Number.isInteger(maxSequenceLength) || maxSequenceLength < 1) {
      throw new RangeError(`maxSequenceLength ${maxSequenceLength} must be a positive integer`);
    }
    // Every pass is queued before the first await (the graph is shared; see #encode).
    const rows = await Promise.all(prompts.map((prompt) => this.#row(prompt, maxSequenceLength)));
    const width = this.width;
    const data = new Float32Array(prompts.length * maxSequenceLength * width);
    rows.forEach((row, i) => data.set(row.data, i * maxSequenceLength * width));
    return {
      promptEmbeds: { shape: [prompts.length, maxSequenceLength, width], data },
      notes: [...new Set(rows.flatMap((row) => row.notes))],
    };
  }

  release(): void {
    this.encoder.release();
  }

  #row(prompt: string, maxSequenceLength: number): Promise<EncodedRow> {
    const key = `${maxSequenceLength}\n${prompt}`;
    const remembered = this.#remembered.get(key);
    if (remembered) return remembered;
    const encoded = this.#encode(prompt, maxSequenceLength);
    this.#remembered.set(key, encoded);
    // A failed pass is forgotten, so that the next request runs it again.
    encoded.catch(() => {
      if (this.#remembered.peek(key) === encoded) this.#remembered.delete(key);
    });
    return encoded;
  }

  async #encode(prompt: string, maxSequenceLength: number): Promise<EncodedRow> {
    const ids = this.tokenizer.encode(cleanPrompt(prompt), maxSequenceLength);
    // attention_mask.sum(): the prompt's tokens and </s>, whatever ids they are (a literal "<pad>" counts).
    const real = Math.min(ids.tokens, maxSequenceLength);
    const graph = this.encoder.graph(1, maxSequenceLength);
    this.encoder.writeInputIds(graph, ids.ids, real);
    submitDispatches(this.ctx.gpu, forwardCommands(graph));
    this.encodes++;
    // readFloats queues its copy before it awaits, so the next prompt's writes land after this pass's copy.
    const data = await readFloats(this.ctx.gpu, graph.lastHiddenState);
    data.fill(0, real * this.width);
    return { data, notes: truncationNotes("UMT5", ids, maxSequenceLength) };
  }
}
