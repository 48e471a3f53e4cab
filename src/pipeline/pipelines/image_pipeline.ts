// What the server and the CLI run, whatever the model family: a pipeline in diffusers' sense (components
// composed by model_index.json) that turns a resolved request into images.
import type { DenoiserGraph } from "../../model/denoiser_graph.ts";
import type { DenoiseOptions, GenerateResult } from "../generate.ts";
import type { ModelCard } from "../model_card.ts";
import type { GenerationRequest } from "../request.ts";

export interface RunOptions extends DenoiseOptions {
  /** [images, C, H, W] starting latents in the pipeline's own layout (diffusers' `latents=`). */
  latents?: Float32Array;
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

/** Throws naming both shapes unless `latents` holds `images` latents of the model's shape. */
export function checkLatents(card: ModelCard, images: number, latents: Float32Array | undefined): void {
  if (!latents) return;
  const per = card.latent.reduce((a, b) => a * b, 1);
  if (latents.length !== images * per) {
    throw new LatentsError(
      `latents hold ${latents.length} values; the model takes [${[images, ...card.latent].join(", ")}] ` +
        `(${images * per} values) for ${images} image(s)`,
    );
  }
}

export class LatentsError extends Error {
  constructor(message: string) {
    super(`latents: ${message}`);
    this.name = "LatentsError";
  }
}
