// diffusers' WanPipeline (Wan2.1 text-to-video): UMT5 prompt embeddings (or precomputed ones), latents
// [B, 16, (frames - 1) / 4 + 1, H / 8, W / 8] denoised by WanTransformer3DModel with the directory's
// UniPCMultistepScheduler (or FlowMatchEuler on its flow_shift), classifier-free guidance as two separate
// forwards per step (conditional, then unconditional against the negative prompt), each with its own cache
// (src/cache/separate_cfg.ts); then the latents de-normalised by the VAE's latents_mean / latents_std and
// decoded by AutoencoderKLWan frame chunk by frame chunk. A run returns the frames of its videos in order.
import type { GpuContext } from "../../gpu/context.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { DenoiserGraph } from "../../model/denoiser_graph.ts";
import type { WanGraphShape } from "../../model/wan/graph_plan.ts";
import { WanTransformer } from "../../model/wan/transformer.ts";
import { WanVaeDecoder } from "../../model/wan_vae/decoder.ts";
import { type Decoded, generateImages } from "../generate.ts";
import { type WanCard, wanLatentShape } from "../model_card.ts";
import type { GenerationRequest } from "../request.ts";
import { createSchedule, type Schedule, wanFlowMatchSchedule } from "../schedulers/schedule.ts";
import { LazyLoad } from "../text/lazy_load.ts";
import { WanPromptEncoder } from "../text/wan_prompt_encoder.ts";
import { type ImagePipeline, LatentsError, type RunOptions } from "./image_pipeline.ts";
import { perImageRows } from "./embedding_rows.ts";
import { wanConditioning } from "./wan_conditioning.ts";

/** The frames a request asks for, the card's default when it names none. */
export function requestFrames(card: WanCard, request: GenerationRequest): number {
  return request.video?.frames ?? card.video.frames;
}

/** The request's schedule: the directory's scheduler, or the one its sampler names. */
export function wanSchedule(card: WanCard, request: GenerationRequest): Schedule {
  const path = `${card.dir}/scheduler/scheduler_config.json`;
  if (
    request.sampler === "FlowMatchEulerDiscreteScheduler" && card.scheduler._class_name !== request.sampler
  ) {
    return wanFlowMatchSchedule(path, card.scheduler, request.steps);
  }
  return createSchedule(path, card.scheduler, request.steps);
}

export class WanPipeline implements ImagePipeline {
  /** UMT5 and its tokenizer, loaded with the first prompt. */
  readonly #prompts = new LazyLoad(async () => {
    const { dir, text } = this.card;
    if (!text.encoders) throw new Error(`${dir}: ${text.absent.join(", ")} are null: no prompt encoder`);
    return await WanPromptEncoder.load(this.ctx, `${dir}/text_encoder`, `${dir}/tokenizer`);
  });

  private constructor(
    readonly card: WanCard,
    private readonly ctx: GpuContext,
    readonly transformer: WanTransformer,
    readonly vae: WanVaeDecoder,
  ) {}

  static async load(ctx: GpuContext, card: WanCard): Promise<WanPipeline> {
    const transformer = await WanTransformer.load(ctx, `${card.dir}/transformer`, card.transformer);
    try {
      return new WanPipeline(
        card,
        ctx,
        transformer,
        await WanVaeDecoder.load(ctx, `${card.dir}/vae`, card.vae),
      );
    } catch (e) {
      transformer.release();
      throw e;
    }
  }

  /** One video's graph for `request` with `textTokens` prompt tokens. */
  graphShape(request: GenerationRequest, textTokens: number): WanGraphShape {
    return this.#shape(1, request.size, requestFrames(this.card, request), textTokens);
  }

  #shape(batch: number, size: { width: number; height: number }, frames: number, textTokens: number) {
    const [, latentFrames, height, width] = wanLatentShape(this.card, size, frames);
    return { batch, frames: latentFrames, height, width, textTokens } satisfies WanGraphShape;
  }

  /** The graph at the default size, frames and prompt length: what benchmarks and cache checks run. */
  get denoiser(): { graph(batch: number): DenoiserGraph } {
    const { size, video, text } = this.card;
    return {
      graph: (batch) =>
        this.transformer.graph(this.#shape(batch, size, video.frames, text.maxSequenceLength)),
    };
  }

  guided(guidance: number): boolean {
    return guidance > 1;
  }

  get flopsPerSample(): number {
    const { size, video, text } = this.card;
    return this.transformer.flopsPerSample(this.#shape(1, size, video.frames, text.maxSequenceLength));
  }

  get weightBytes(): number {
    return this.transformer.weightBytes + this.vae.weightBytes;
  }

  async run(request: GenerationRequest, options: RunOptions = {}) {
    const frames = requestFrames(this.card, request);
    const latentShape = wanLatentShape(this.card, request.size, frames);
    const per = latentShape.reduce((a, b) => a * b, 1);
    if (options.latents && options.latents.length !== request.images * per) {
      throw new LatentsError(
        `latents hold ${options.latents.length} values; the model takes [${[
          request.images,
          ...latentShape,
        ]}] ` +
          `for ${request.images} video(s) of ${frames} frames at ${request.size.width}x${request.size.height}`,
      );
    }
    const encodeStarted = performance.now();
    const conditioning = await wanConditioning(
      this.card,
      request,
      options.embeddings,
      () => this.promptEncoder(),
    );
    const encodeSeconds = (performance.now() - encodeStarted) / 1000;
    const { promptEmbeds, negative } = conditioning;
    const textTokens = promptEmbeds.shape[1];
    const cache = request.cache;
    const spec = {
      denoiser: {
        graph: (batch: number) =>
          this.transformer.graph(this.#shape(batch, request.size, frames, textTokens)),
      },
      schedule: wanSchedule(this.card, request),
      latentShape,
      images: request.images,
      inputs: {
        encoder_hidden_states: perImageRows(
          negative ? [promptEmbeds, negative] : [promptEmbeds],
          request.images,
        ),
      },
      guidance: negative ? request.guidance : null,
      cfgPasses: "separate" as const,
      uncondFirst: cache.strategy !== "none" && cache.cfg.computeFirst,
      seed: request.seed,
      latents: options.latents,
    };
    const result = await generateImages(
      this.ctx,
      spec,
      options,
      (latents, recorder) => this.#decode(latents, recorder),
    );
    const phases = result.phases && { ...result.phases, encode: encodeSeconds };
    return { ...result, notes: conditioning.notes, ...(phases ? { phases } : {}) };
  }

  /** Latents [B, C, F, h, w] -> frames [B x T, 3, H, W], each video's frames in order. */
  async #decode(latents: Tensor, recorder: StepRecorder): Promise<Decoded> {
    const { data, shape } = await this.vae.decodeLatentsToFrames(latents, recorder);
    return { images: data, shape };
  }

  promptEncoder(): Promise<WanPromptEncoder> {
    return this.#prompts.get();
  }

  release(): void {
    this.#prompts.release();
    this.transformer.release();
    this.vae.release();
  }
}
