// FluxPipeline's encode_prompt: CLIP's pooled output (77 tokens) and T5's last hidden state
// (max_sequence_length tokens), each prompt padded and truncated as FluxPipeline's tokenizer calls do. The
// four components load together, on the first prompt, not with the transformer. A repeated prompt reuses
// its embeddings from a small LRU and costs no encoder work, also while its first pass is still running.
import { LRUCache } from "lru-cache";
import type { GpuContext } from "../../gpu/context.ts";
import { submitDispatches } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import type { Float32Tensor } from "../../model/safetensors.ts";
import { ClipTextModel } from "../../model/text/clip_text_model.ts";
import { T5Encoder } from "../../model/text/t5_encoder.ts";
import { forwardCommands } from "../../model/text/text_encoder.ts";
import { PromptTokenizer } from "../../model/text/tokenizer.ts";
import type { FluxCard } from "../model_card.ts";
import { truncationNotes } from "./truncation.ts";

/** Prompts whose embeddings are kept (FLUX.1: 8 MiB of T5 states each). */
const REMEMBERED_PROMPTS = 16;

export interface EncodedPrompt {
  /** [1, max_sequence_length, joint_attention_dim]: T5's last_hidden_state. */
  promptEmbeds: Float32Tensor;
  /** [1, pooled_projection_dim]: CLIP's pooler_output. */
  pooledPromptEmbeds: Float32Tensor;
  /** What truncation dropped, in the words of FluxPipeline's warning. */
  notes: string[];
}

export class FluxPromptEncoder {
  readonly #remembered = new LRUCache<string, Promise<EncodedPrompt>>({ max: REMEMBERED_PROMPTS });
  /** Encoder passes run (a remembered prompt runs none). */
  encodes = 0;

  private constructor(
    private readonly ctx: GpuContext,
    private readonly card: FluxCard,
    private readonly tokenizers: { clip: PromptTokenizer; t5: PromptTokenizer },
    private readonly clip: ClipTextModel,
    private readonly t5: T5Encoder,
  ) {}

  static async load(ctx: GpuContext, card: FluxCard): Promise<FluxPromptEncoder> {
    const encoders = card.text.encoders;
    if (!encoders) throw new Error(`${card.dir}: ${card.text.absent.join(", ")} are null: no prompt encoder`);
    const tokenizers = {
      clip: await PromptTokenizer.load(`${card.dir}/tokenizer`, "clip"),
      t5: await PromptTokenizer.load(`${card.dir}/tokenizer_2`, "t5"),
    };
    const clip = await ClipTextModel.load(ctx, `${card.dir}/text_encoder`, encoders.clip);
    try {
      const t5 = await T5Encoder.load(ctx, `${card.dir}/text_encoder_2`, encoders.t5);
      return new FluxPromptEncoder(ctx, card, tokenizers, clip, t5);
    } catch (e) {
      clip.release();
      throw e;
    }
  }

  encode(prompt: string): Promise<EncodedPrompt> {
    const remembered = this.#remembered.get(prompt);
    if (remembered) return remembered;
    const encoded = this.#encode(prompt);
    this.#remembered.set(prompt, encoded);
    // A failed pass is forgotten, so that the next request runs it again.
    encoded.catch(() => {
      if (this.#remembered.peek(prompt) === encoded) this.#remembered.delete(prompt);
    });
    return encoded;
  }

  async #encode(prompt: string): Promise<EncodedPrompt> {
    const { clipTokens, maxSequenceLength, promptEmbedDim, pooledDim } = this.card.text;
    const clipIds = this.tokenizers.clip.encode(prompt, clipTokens);
    const t5Ids = this.tokenizers.t5.encode(prompt, maxSequenceLength);
    const clipGraph = this.clip.graph(1, clipTokens);
    this.clip.writeInputIds(clipGraph, clipIds.ids);
    const t5Graph = this.t5.graph(1, maxSequenceLength);
    this.t5.writeInputIds(t5Graph, t5Ids.ids);
    submitDispatches(this.ctx.gpu, [...forwardCommands(clipGraph), ...forwardCommands(t5Graph)]);
    this.encodes++;
    // Both copies are queued before the first await: the graphs are shared, and another prompt's pass queued
    // while this one waits would overwrite their outputs.
    const [promptEmbeds, pooledPromptEmbeds] = await Promise.all([
      readFloats(this.ctx.gpu, t5Graph.lastHiddenState),
      readFloats(this.ctx.gpu, clipGraph.poolerOutput),
    ]);
    return {
      promptEmbeds: { shape: [1, maxSequenceLength, promptEmbedDim], data: promptEmbeds },
      pooledPromptEmbeds: { shape: [1, pooledDim], data: pooledPromptEmbeds },
      notes: [
        ...truncationNotes("CLIP", clipIds, clipTokens),
        ...truncationNotes("T5", t5Ids, maxSequenceLength),
      ],
    };
  }

  release(): void {
    this.clip.release();
    this.t5.release();
  }
}
