// diffusers' DiTPipeline: a class-conditional DiTTransformer2DModel denoising VAE latents with the
// directory's scheduler, then AutoencoderKL's decoder. As diffusers does it: guidance applies when the scale
// is above 1 and only to the noise-prediction channels (the learned-sigma half of the output is dropped, by
// reading the first in_channels of it), the unconditional half uses the last label row, and the latents are
// divided by the VAE's scaling_factor before decoding (in diffusers' tiles when the image is too large for one
// pass within the adapter's binding limits).
import type { GpuContext } from "../../gpu/context.ts";
import { DitTransformer } from "../../model/dit/transformer.ts";
import type { AutoencoderKlDecoder } from "../../model/vae/decoder.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { axpy } from "../../ops/axpy.ts";
import { generateImages } from "../generate.ts";
import type { ModelCard } from "../model_card.ts";
import type { GenerationRequest } from "../request.ts";
import { createSchedule } from "../schedulers/schedule.ts";
import { checkLatents, type ImagePipeline, type RunOptions } from "./image_pipeline.ts";
import { decodeLatents, loadVae } from "./vae_decode.ts";

type DitCard = ModelCard & { pipeline: "DiTPipeline" };

export class DitPipeline implements ImagePipeline {
  private constructor(
    readonly card: DitCard,
    private readonly ctx: GpuContext,
    readonly transformer: DitTransformer,
    readonly vae: AutoencoderKlDecoder,
  ) {}

  static async load(ctx: GpuContext, card: DitCard): Promise<DitPipeline> {
    const transformer = await DitTransformer.load(ctx, `${card.dir}/transformer`, card.transformer);
    return new DitPipeline(card, ctx, transformer, await loadVae(ctx, card, transformer));
  }

  get denoiser(): DitTransformer {
    return this.transformer;
  }

  /** DiTPipeline guides when guidance_scale > 1. */
  guided(guidance: number): boolean {
    return guidance > 1;
  }

  get flopsPerSample(): number {
    return this.transformer.flopsPerSample;
  }

  get weightBytes(): number {
    return this.transformer.weightBytes + this.vae.weightBytes;
  }

  /** The directory's scheduler, or another scheduler class built from the same config (from_config). */
  #schedule(request: GenerationRequest) {
    const config = request.sampler === "default"
      ? this.card.scheduler
      : { ...this.card.scheduler, _class_name: request.sampler };
    return createSchedule(`${this.card.dir}/scheduler/scheduler_config.json`, config, request.steps, {
      eta: request.eta,
    });
  }

  run(request: GenerationRequest, options: RunOptions = {}) {
    const latentShape = checkLatents(this.card, request, options.latents);
    const schedule = this.#schedule(request);
    const spec = {
      denoiser: this.transformer,
      schedule,
      latentShape,
      images: request.images,
      labels: { ids: request.labels, nullClass: this.card.classes.nullClass },
      guidance: this.guided(request.guidance) ? request.guidance : null,
      seed: request.seed,
      latents: options.latents,
    };
    return generateImages(this.ctx, spec, options, (latents, recorder) => this.#decode(latents, recorder));
  }

  /** latents / scaling_factor through the VAE. */
  async #decode(latents: Tensor, recorder: StepRecorder) {
    const z = axpy(this.ctx, latents, latents, { alpha: 1 / this.card.vae.scaling_factor, beta: 0 });
    try {
      recorder.encode(z.dispatches);
      return await decodeLatents(this.ctx, this.vae, z.out, recorder);
    } finally {
      z.release();
    }
  }

  release(): void {
    this.transformer.release();
    this.vae.release();
  }
}
