// diffusers' DiTPipeline: a class-conditional DiTTransformer2DModel denoising VAE latents with the
// directory's scheduler, then AutoencoderKL's decoder. As diffusers does it: guidance applies when the scale
// is above 1 and only to the noise-prediction channels (the learned-sigma half of the output is dropped, by
// reading the first in_channels of it), the unconditional half uses the last label row, and the latents are
// divided by the VAE's scaling_factor before decoding (in diffusers' tiles when the image is too large for one
// pass within the adapter's binding limits).
import type { GpuContext } from "../../gpu/context.ts";
import { DitTransformer } from "../../model/dit/transformer.ts";
import { AutoencoderKlDecoder } from "../../model/vae/decoder.ts";
import { decodeTiled, largestActivationBytes } from "../../model/vae/tiled_decode.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { axpy } from "../../ops/axpy.ts";
import { generateImages } from "../generate.ts";
import type { ModelCard } from "../model_card.ts";
import type { GenerationRequest } from "../request.ts";
import { createSchedule } from "../schedulers/schedule.ts";
import { checkLatents, type ImagePipeline, type RunOptions } from "./image_pipeline.ts";

type DitCard = ModelCard & { pipeline: "DiTPipeline" };
type Shape = [number, number, number, number];

export class DitPipeline implements ImagePipeline {
  private constructor(
    readonly card: DitCard,
    private readonly ctx: GpuContext,
    readonly transformer: DitTransformer,
    readonly vae: AutoencoderKlDecoder,
  ) {}

  static async load(ctx: GpuContext, card: DitCard): Promise<DitPipeline> {
    const transformer = await DitTransformer.load(ctx, `${card.dir}/transformer`, card.transformer);
    try {
      return new DitPipeline(
        card,
        ctx,
        transformer,
        await AutoencoderKlDecoder.load(ctx, `${card.dir}/vae`, card.vae),
      );
    } catch (e) {
      transformer.release();
      throw e;
    }
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
    checkLatents(this.card, request.labels.length, options.latents);
    const schedule = this.#schedule(request);
    const spec = {
      denoiser: this.transformer,
      schedule,
      latentShape: this.card.latent,
      images: request.labels.length,
      labels: { ids: request.labels, nullClass: this.card.classes.nullClass },
      guidance: this.guided(request.guidance) ? request.guidance : null,
      seed: request.seed,
      latents: options.latents,
    };
    return generateImages(this.ctx, spec, options, (latents, recorder) => this.#decode(latents, recorder));
  }

  /** latents / scaling_factor through the VAE: in one graph, or in diffusers' tiles when one would not fit. */
  async #decode(latents: Tensor, recorder: StepRecorder): Promise<{ images: Float32Array; shape: Shape }> {
    const shape = latents.shape as Shape;
    const scale = 1 / this.card.vae.scaling_factor;
    const limit = this.ctx.gpu.info.limits.maxStorageBufferBindingSize;
    if (largestActivationBytes(this.card.vae, shape) > limit) {
      const z = (await recorder.read(latents)).map((v) => v * scale);
      const decoded = await decodeTiled(this.ctx, this.vae, { data: z, shape });
      return { images: decoded.data, shape: decoded.shape };
    }
    const decoder = this.vae.graph(shape);
    const scaled = axpy(this.ctx, latents, latents, { alpha: scale, beta: 0, out: decoder.z });
    try {
      recorder.encode([...scaled.dispatches, ...decoder.commands]);
      return { images: await recorder.read(decoder.output), shape: decoder.output.shape as Shape };
    } finally {
      scaled.release();
    }
  }

  release(): void {
    this.transformer.release();
    this.vae.release();
  }
}
