// What the server and the CLI run, whatever the model family: a pipeline in diffusers' sense (components
// composed by model_index.json) that turns a resolved request into images.
import type { DenoiserGraph } from "../../model/denoiser_graph.ts";
import type { DenoiseOptions, GenerateResult } from "../generate.ts";
import { latentShape, type ModelCard } from "../model_card.ts";
import type { GenerationRequest } from "../request.ts";
import type { Float32Tensor } from "../../model/safetensors.ts";

export interface RunOptions extends DenoiseOptions {
  /** Starting latents in the pipeline's own layout (diffusers' `latents=`): [images, ...latentShape]. */
  latents?: Float32Array;
  /** Precomputed text conditioning by diffusers' argument names (prompt_embeds, pooled_prompt_embeds, ...). */
  embeddings?: Record<string, Float32Tensor>;
}

export interface ImagePipeline {
  readonly card: ModelCard;
  /** The transformer whose block list the cache strategies run. */
  readonly denoiser: { graph(batch: number): DenoiserGraph };
  /** Whether `guidance` runs classifier-free guidance (an unconditional half) in this pipeline. */
  guided(guidance: number): boolean;
  /** Approximate FLOPs of one transformer forward per sample, for reports. */
  readonly flopsPerSample: number;
  /** Bytes the loaded weights hold on the GPU, in their stored dtypes. */
  readonly weightBytes: number;
  /** Images [n, channels, height, width] in the model's data range (about [-1, 1]). */
  run(request: GenerationRequest, options?: RunOptions): Promise<GenerateResult>;
  release(): void;
}

/**
 * The latent shape per image at the request's size; throws naming both shapes unless `latents` holds that
 * many values for every image.
 */
export function checkLatents(card: ModelCard, request: GenerationRequest, latents: Float32Array | undefined) {
  const shape = latentShape(card, request.size);
  const per = shape.reduce((a, b) => a * b, 1);
  if (latents && latents.length !== request.images * per) {
    throw new LatentsError(
      `latents hold ${latents.length} values; the model takes [${[request.images, ...shape].join(", ")}] ` +
        `(${
          request.images * per
        } values) for ${request.images} image(s) at ${request.size.width}x${request.size.height}`,
    );
  }
  return shape;
}

export class LatentsError extends Error {
  constructor(message: string) {
    super(`latents: ${message}`);
    this.name = "LatentsError";
  }
}
