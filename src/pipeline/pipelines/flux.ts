// diffusers' FluxPipeline (FLUX.1 dev and schnell): text conditioning (prompts through CLIP and T5, or
// their precomputed embeddings), packed 2x2 latents denoised by FluxTransformer2DModel with the directory's
// FlowMatchEulerDiscreteScheduler on FluxPipeline's own sigmas (linspace(1, 1/N, N), shifted by the mu of the
// image sequence length), the guidance scale through the guidance embedding (dev), true CFG against a
// negative prompt when asked, then the latents unpacked, mapped by latents / scaling_factor + shift_factor
// and decoded by the 16-channel AutoencoderKL.
import type { GpuContext } from "../../gpu/context.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { DenoiserGraph } from "../../model/denoiser_graph.ts";
import { type FluxGraphShape, FluxTransformer } from "../../model/flux/transformer.ts";
import type { Float32Tensor } from "../../model/safetensors.ts";
import { vaeScale } from "../../model/vae/config.ts";
import type { AutoencoderKlDecoder } from "../../model/vae/decoder.ts";
import { axpy } from "../../ops/axpy.ts";
import { unpatchify } from "../../ops/patch.ts";
import { generateImages } from "../generate.ts";
import type { FluxCard } from "../model_card.ts";
import type { GenerationRequest } from "../request.ts";
import { numpyLinspace } from "../schedulers/betas.ts";
import { createSchedule, type Schedule } from "../schedulers/schedule.ts";
import { FluxPromptEncoder } from "../text/flux_prompt_encoder.ts";
import { LazyLoad } from "../text/lazy_load.ts";
import { perImageRows } from "./embedding_rows.ts";
import { type TextConditioning, textConditioning } from "./flux_conditioning.ts";
import { checkLatents, type ImagePipeline, type RunOptions } from "./image_pipeline.ts";
import { decodeLatents, loadVae } from "./vae_decode.ts";

/** The transformer reads timesteps in [0, 1]: FluxPipeline divides the scheduler's by 1000. */
const TIMESTEP_UNITS = 1000;

/** diffusers' calculate_shift: mu linear in the image tokens between the scheduler config's two anchors. */
export function calculateShift(tokens: number, scheduler: Record<string, unknown>): number {
  const num = (key: string, fallback: number) =>
    typeof scheduler[key] === "number" ? scheduler[key] : fallback;
  const [baseLen, maxLen] = [num("base_image_seq_len", 256), num("max_image_seq_len", 4096)];
  const [baseShift, maxShift] = [num("base_shift", 0.5), num("max_shift", 1.15)];
  const m = (maxShift - baseShift) / (maxLen - baseLen);
  return tokens * m + (baseShift - m * baseLen);
}

/**
 * FluxPipeline's schedule: sigmas linspace(1, 1/N, N) shifted by the mu of `tokens` image tokens, with the
 * timesteps in the transformer's [0, 1] units.
 */
export function fluxSchedule(
  dir: string,
  scheduler: Record<string, unknown>,
  steps: number,
  tokens: number,
): Schedule {
  const schedule = createSchedule(`${dir}/scheduler/scheduler_config.json`, scheduler, steps, {
    sigmas: numpyLinspace(1, 1 / steps, steps),
    mu: calculateShift(tokens, scheduler),
  });
  return {
    ...schedule,
    steps: schedule.steps.map((s) => ({ ...s, timestep: Math.fround(s.timestep) / TIMESTEP_UNITS })),
  };
}

export class FluxPipeline implements ImagePipeline {
  /** CLIP, T5 and their tokenizers, loaded with the first prompt. */
  readonly #prompts = new LazyLoad(() => FluxPromptEncoder.load(this.ctx, this.card));

  private constructor(
    readonly card: FluxCard,
    private readonly ctx: GpuContext,
    readonly transformer: FluxTransformer,
    readonly vae: AutoencoderKlDecoder,
  ) {}

  static async load(ctx: GpuContext, card: FluxCard): Promise<FluxPipeline> {
    const transformer = await FluxTransformer.load(ctx, `${card.dir}/transformer`, card.transformer);
    return new FluxPipeline(card, ctx, transformer, await loadVae(ctx, card, transformer));
  }

  /** The packed latent grid and text length of a graph at `size` (h / 16 x w / 16 tokens for FLUX.1). */
  #shape(batch: number, size: { width: number; height: number }, textTokens: number): FluxGraphShape {
    const cell = 2 * vaeScale(this.card.vae);
    return { batch, gridHeight: size.height / cell, gridWidth: size.width / cell, textTokens };
  }

  /** The graph at the default size and prompt length: what benchmarks and cache checks run. */
  get denoiser(): { graph(batch: number): DenoiserGraph } {
    return {
      graph: (batch) =>
        this.transformer.graph(this.#shape(batch, this.card.size, this.card.text.maxSequenceLength)),
    };
  }

  /** Distilled guidance goes through the guidance embedding: no unconditional half (true CFG aside). */
  guided(): boolean {
    return false;
  }

  get flopsPerSample(): number {
    return this.transformer.flopsPerSample(this.#shape(1, this.card.size, this.card.text.maxSequenceLength));
  }

  get weightBytes(): number {
    return this.transformer.weightBytes + this.vae.weightBytes;
  }

  /** encoder_hidden_states, pooled_projections (and guidance) for every row of the graph's batch. */
  #inputs(conditioning: TextConditioning, images: number, guidance: number): Record<string, Float32Array> {
    const rows = (per: Float32Tensor, negative: Float32Tensor | undefined) =>
      perImageRows(negative ? [per, negative] : [per], images);
    const c = conditioning;
    const inputs: Record<string, Float32Array> = {
      encoder_hidden_states: rows(c.promptEmbeds, c.negative?.promptEmbeds),
      pooled_projections: rows(c.pooledPromptEmbeds, c.negative?.pooledPromptEmbeds),
    };
    if (this.card.transformer.guidance_embeds) {
      inputs.guidance = new Float32Array(inputs.pooled_projections.length / this.card.text.pooledDim).fill(
        guidance,
      );
    }
    return inputs;
  }

  async run(request: GenerationRequest, options: RunOptions = {}) {
    const latentShape = checkLatents(this.card, request, options.latents);
    const encodeStarted = performance.now();
    const conditioning = await textConditioning(
      this.card,
      request,
      options.embeddings,
      () => this.promptEncoder(),
    );
    const encodeSeconds = (performance.now() - encodeStarted) / 1000;
    const tokens = latentShape[0];
    const textTokens = conditioning.promptEmbeds.shape[1];
    const spec = {
      denoiser: {
        graph: (batch: number) => this.transformer.graph(this.#shape(batch, request.size, textTokens)),
      },
      schedule: fluxSchedule(this.card.dir, this.card.scheduler, request.steps, tokens),
      latentShape,
      images: request.images,
      inputs: this.#inputs(conditioning, request.images, request.guidance),
      guidance: conditioning.negative ? request.true_cfg : null,
      seed: request.seed,
      latents: options.latents,
    };
    const result = await generateImages(
      this.ctx,
      spec,
      options,
      (latents, recorder) => this.#decode(latents, request, recorder),
    );
    const phases = result.phases && { ...result.phases, encode: encodeSeconds };
    return { ...result, notes: conditioning.notes, ...(phases ? { phases } : {}) };
  }

  /** Unpacks [B, N, 4C] to [B, C, h, w], then latents / scaling_factor + shift_factor through the VAE. */
  async #decode(latents: Tensor, request: GenerationRequest, recorder: StepRecorder) {
    const scale = vaeScale(this.card.vae);
    const { scaling_factor: scaling, shift_factor: shift, latent_channels: channels } = this.card.vae;
    const geometry = {
      batch: request.images,
      channels,
      height: request.size.height / scale,
      width: request.size.width / scale,
      patch: 2,
    };
    const unpacked = unpatchify(this.ctx, latents, geometry);
    const z = axpy(this.ctx, unpacked.out, unpacked.out, {
      alpha: 1 / scaling,
      beta: 0,
      constant: shift ?? 0,
    });
    try {
      recorder.encode([...unpacked.dispatches, ...z.dispatches]);
      return await decodeLatents(this.ctx, this.vae, z.out, recorder);
    } finally {
      z.release();
      unpacked.release();
    }
  }

  promptEncoder(): Promise<FluxPromptEncoder> {
    return this.#prompts.get();
  }

  release(): void {
    this.#prompts.release();
    this.transformer.release();
    this.vae.release();
  }
}
