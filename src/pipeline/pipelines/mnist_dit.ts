// The embedded MnistDiT: a flow-matching transformer that draws 28x28 digits directly in pixel space, so its
// "decode" is the identity; its samplers are the flow ones of src/pipeline/sampler.ts.
import type { GpuContext } from "../../gpu/context.ts";
import { Dit } from "../../model/mnist_dit/transformer.ts";
import { generateImages } from "../generate.ts";
import type { ModelCard } from "../model_card.ts";
import type { GenerationRequest } from "../request.ts";
import { flowSchedule, type SamplerName } from "../sampler.ts";
import { checkLatents, type ImagePipeline, type RunOptions } from "./image_pipeline.ts";

export class MnistDitPipeline implements ImagePipeline {
  private constructor(
    readonly card: ModelCard & { pipeline: "MnistDiT" },
    private readonly ctx: GpuContext,
    readonly model: Dit,
  ) {}

  static async load(ctx: GpuContext, card: ModelCard & { pipeline: "MnistDiT" }): Promise<MnistDitPipeline> {
    return new MnistDitPipeline(card, ctx, await Dit.load(ctx, card.dir));
  }

  get denoiser(): Dit {
    return this.model;
  }

  /** The embedded model runs guidance at any scale but 1 (1 is the conditional pass alone). */
  guided(guidance: number): boolean {
    return guidance !== 1;
  }

  get flopsPerSample(): number {
    return this.model.flopsPerSample;
  }

  get weightBytes(): number {
    return this.model.weightBytes;
  }

  run(request: GenerationRequest, options: RunOptions = {}) {
    const latentShape = checkLatents(this.card, request, options.latents);
    const spec = {
      denoiser: this.model,
      schedule: flowSchedule({
        sampler: request.sampler as SamplerName,
        steps: request.steps,
        shift: request.shift,
        eta: request.eta,
      }),
      latentShape,
      images: request.images,
      labels: { ids: request.labels, nullClass: this.card.classes.nullClass },
      guidance: this.guided(request.guidance) ? request.guidance : null,
      seed: request.seed,
      latents: options.latents,
    };
    // The model draws in pixel space: its latents are the images.
    return generateImages(this.ctx, spec, options, async (latents, recorder) => ({
      images: await recorder.read(latents),
      shape: latents.shape as [number, number, number, number],
    }));
  }

  release(): void {
    this.model.release();
  }
}
