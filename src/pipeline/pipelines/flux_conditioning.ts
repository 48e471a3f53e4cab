// What conditions a FLUX request: the prompts' embeddings (through the lazily loaded prompt encoder), or
// precomputed ones by diffusers' argument names, each checked against the transformer's widths. Embeddings
// take batch 1 (repeated for every image, as num_images_per_prompt does) or one row per image. A negative
// prompt (true CFG) must have the prompt's token count: both halves run in one batch.
import type { Float32Tensor } from "../../model/safetensors.ts";
import type { FluxCard } from "../model_card.ts";
import { type GenerationRequest, RequestError } from "../request.ts";
import type { FluxPromptEncoder } from "../text/flux_prompt_encoder.ts";
import { checkEmbeddingShape, stackRows } from "./embedding_rows.ts";

export interface TextConditioning {
  promptEmbeds: Float32Tensor;
  pooledPromptEmbeds: Float32Tensor;
  negative: { promptEmbeds: Float32Tensor; pooledPromptEmbeds: Float32Tensor } | null;
  notes: string[];
}

export const EMBEDDING_NAMES = [
  "prompt_embeds",
  "pooled_prompt_embeds",
  "negative_prompt_embeds",
  "negative_pooled_prompt_embeds",
] as const;

/**
 * The images of a request conditioned on `embeddings` (one per prompt_embeds row, or n of a single row) and
 * whether negative embeddings come with them; throws naming `n` when it fits neither.
 */
export function embeddingsRequest(
  embeddings: Record<string, Float32Tensor>,
  n: number,
): { images: number; negative: boolean } {
  const batch = embeddings.prompt_embeds?.shape[0] ?? 1;
  if (batch > 1 && n !== 1 && n !== batch) {
    throw new RequestError(
      "n",
      `prompt_embeds hold ${batch} prompts, one image each; n must be 1 or ${batch}`,
    );
  }
  const negative = "negative_prompt_embeds" in embeddings || "negative_pooled_prompt_embeds" in embeddings;
  return { images: Math.max(batch, n), negative };
}

/**
 * Precomputed embeddings checked against the card's widths and the request's images and true CFG; throws a
 * RequestError naming the tensor and both shapes. The server runs it before queueing a request.
 */
export function givenEmbeddings(
  card: FluxCard,
  request: GenerationRequest,
  given: Record<string, Float32Tensor>,
): TextConditioning {
  const unknown = Object.keys(given).filter((n) => !(EMBEDDING_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new RequestError(
      unknown[0],
      `not an embedding FluxPipeline takes; allowed: ${EMBEDDING_NAMES.join(", ")}`,
    );
  }
  const { promptEmbedDim, pooledDim } = card.text;
  const tokens = given.prompt_embeds?.shape[1] ?? 0;
  const pair = (prefix: string) => ({
    promptEmbeds: checkEmbeddingShape(`${prefix}prompt_embeds`, given[`${prefix}prompt_embeds`], [
      tokens,
      promptEmbedDim,
    ], request.images),
    pooledPromptEmbeds: checkEmbeddingShape(
      `${prefix}pooled_prompt_embeds`,
      given[`${prefix}pooled_prompt_embeds`],
      [
        pooledDim,
      ],
      request.images,
    ),
  });
  if (!(tokens >= 1)) {
    throw new RequestError(
      "prompt_embeds",
      `give [1 or ${request.images}, tokens, ${promptEmbedDim}] with tokens >= 1`,
    );
  }
  const hasNegative = "negative_prompt_embeds" in given || "negative_pooled_prompt_embeds" in given;
  if (hasNegative !== request.trueCfg) {
    throw new RequestError(
      "negative_prompt_embeds",
      request.trueCfg
        ? "true CFG needs negative_prompt_embeds and negative_pooled_prompt_embeds"
        : "given without true CFG (true_cfg above 1)",
    );
  }
  return { ...pair(""), negative: hasNegative ? pair("negative_") : null, notes: [] };
}

/** `request`'s conditioning: its prompts encoded, or the given embeddings checked. */
export async function textConditioning(
  card: FluxCard,
  request: GenerationRequest,
  given: Record<string, Float32Tensor> | undefined,
  encoder: () => Promise<FluxPromptEncoder>,
): Promise<TextConditioning> {
  if (request.prompts === null) {
    if (!given) {
      throw new RequestError(
        "prompt_embeds",
        "the request names no prompt: give prompt_embeds and pooled_prompt_embeds",
      );
    }
    return givenEmbeddings(card, request, given);
  }
  if (given) throw new RequestError("prompt_embeds", "give either a prompt or prompt_embeds, not both");
  const prompts = await encoder();
  const rows = await Promise.all(request.prompts.map((p) => prompts.encode(p)));
  const negative = request.negativePrompt === null ? null : await prompts.encode(request.negativePrompt);
  const notes = [...new Set([...rows, ...(negative ? [negative] : [])].flatMap((r) => r.notes))];
  return {
    promptEmbeds: stackRows(rows.map((r) => r.promptEmbeds)),
    pooledPromptEmbeds: stackRows(rows.map((r) => r.pooledPromptEmbeds)),
    negative,
    notes,
  };
}
