// What conditions a Wan request: the prompts' UMT5 embeddings (through the lazily loaded prompt encoder, the
// negative prompt "" when guidance runs without one, as WanPipeline does), or precomputed prompt_embeds and
// negative_prompt_embeds, checked against the transformer's text_dim. Embeddings take batch 1 (repeated for
// every video) or one row per video; both CFG passes run on one graph, so the negative embeddings have the
// prompt's token count.
import type { Float32Tensor } from "../../model/safetensors.ts";
import type { WanCard } from "../model_card.ts";
import { type GenerationRequest, RequestError } from "../request.ts";
import type { WanPromptEncoder } from "../text/wan_prompt_encoder.ts";
import { checkEmbeddingShape } from "./embedding_rows.ts";

export interface WanConditioning {
  /** [1 or videos, tokens, text_dim] */
  promptEmbeds: Float32Tensor;
  /** The unconditional pass' embeddings; null without classifier-free guidance. */
  negative: Float32Tensor | null;
  notes: string[];
}

export const WAN_EMBEDDING_NAMES = ["prompt_embeds", "negative_prompt_embeds"] as const;

/** WanPipeline's do_classifier_free_guidance. */
export function wanGuided(request: GenerationRequest): boolean {
  return request.guidance > 1;
}

/** Precomputed embeddings checked against the card's width and the request's videos and guidance. */
export function givenWanEmbeddings(
  card: WanCard,
  request: GenerationRequest,
  given: Record<string, Float32Tensor>,
): WanConditioning {
  const unknown = Object.keys(given).filter((n) => !(WAN_EMBEDDING_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new RequestError(
      unknown[0],
      `not an embedding WanPipeline takes; allowed: ${WAN_EMBEDDING_NAMES.join(", ")}`,
    );
  }
  const width = card.text.promptEmbedDim;
  const tokens = given.prompt_embeds?.shape[1] ?? 0;
  if (!(tokens >= 1)) {
    throw new RequestError(
      "prompt_embeds",
      `give [1 or ${request.images}, tokens, ${width}] with tokens >= 1`,
    );
  }
  const promptEmbeds = checkEmbeddingShape(
    "prompt_embeds",
    given.prompt_embeds,
    [tokens, width],
    request.images,
  );
  const guided = wanGuided(request);
  if (!guided) {
    if (given.negative_prompt_embeds) {
      throw new RequestError(
        "negative_prompt_embeds",
        "given without classifier-free guidance (guidance above 1)",
      );
    }
    return { promptEmbeds, negative: null, notes: [] };
  }
  const negative = checkEmbeddingShape(
    "negative_prompt_embeds",
    given.negative_prompt_embeds,
    [tokens, width],
    request.images,
  );
  return { promptEmbeds, negative, notes: [] };
}

/** `request`'s conditioning: its prompts encoded, or the given embeddings checked. */
export async function wanConditioning(
  card: WanCard,
  request: GenerationRequest,
  given: Record<string, Float32Tensor> | undefined,
  encoder: () => Promise<WanPromptEncoder>,
): Promise<WanConditioning> {
  if (request.prompts === null) {
    if (!given) throw new RequestError("prompt_embeds", "the request names no prompt: give prompt_embeds");
    return givenWanEmbeddings(card, request, given);
  }
  if (given) throw new RequestError("prompt_embeds", "give either a prompt or prompt_embeds, not both");
  const prompts = await encoder();
  const max = card.text.maxSequenceLength;
  const encoded = await prompts.encode(request.prompts, max);
  const negative = wanGuided(request) ? await prompts.encode([request.negativePrompt ?? ""], max) : null;
  return {
    promptEmbeds: encoded.promptEmbeds,
    negative: negative && negative.promptEmbeds,
    notes: [...new Set([...encoded.notes, ...(negative?.notes ?? [])])],
  };
}
