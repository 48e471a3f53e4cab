// What a model directory is, read from its JSON files only (no weights, no GPU), so that the HTTP thread
// and the CLI can validate a request against the model before any GPU work: which pipeline runs it, what
// conditions an image (classes, or a text prompt), the sizes it draws, its block list (for the cache
// options) and its defaults. A directory is either a diffusers pipeline (model_index.json naming its
// components, each a directory with its own config; src/pipeline/cards/ reads each family) or the embedded
// single-component MnistDiT (config.json).
import { CALIBRATION_FILE, type ModelCalibration, parseCalibrationFile } from "../cache/calibration.ts";
import { className, exists, parseConfig, readJsonFile } from "../model/component_config.ts";
import type { DitTransformerConfig } from "../model/dit/config.ts";
import type { FluxTransformerConfig } from "../model/flux/config.ts";
import type { WanTransformerConfig } from "../model/wan/config.ts";
import type { WanVaeConfig } from "../model/wan_vae/config.ts";
import { type DitConfig, ditConfigSchema } from "../model/mnist_dit/config.ts";
import { WeightsError } from "../model/safetensors.ts";
import type { ClipTextConfig, T5Config } from "../model/text/config.ts";
import { type AutoencoderKlConfig, vaeScale } from "../model/vae/config.ts";
import { ditPipelineCard } from "./cards/dit.ts";
import { fluxPipelineCard } from "./cards/flux.ts";
import { mnistCard } from "./cards/mnist_dit.ts";
import { wanPipelineCard } from "./cards/wan.ts";
import type { CfgPasses } from "./cfg_passes.ts";
import type { VideoCard } from "./video/video_inputs.ts";
import type { SizeRule } from "./size_rule.ts";

export const PIPELINES = ["DiTPipeline", "FluxPipeline", "MnistDiT", "WanPipeline"] as const;
export type PipelineName = (typeof PIPELINES)[number];

export interface ClassLabels {
  /** Display name per class id. */
  names: string[];
  /** Every accepted spelling per class id (the name first), compared case-insensitively. */
  aliases: string[][];
  /** The label row that classifier-free guidance runs as "no class". */
  nullClass: number;
}

/** Accepted names besides the display names and the ids themselves ("seven" for "7"). */
export function classWords(classes: ClassLabels): string[] {
  return classes.aliases.flatMap((names, id) => names.slice(1).filter((n) => n !== String(id)));
}

/** How Wan is conditioned: prompts through UMT5, or precomputed prompt_embeds [videos, tokens, text_dim]. */
export interface UmT5TextInputs {
  /** The encoder's config; null when model_index.json saves text_encoder or tokenizer as null. */
  encoders: { umt5: T5Config } | null;
  absent: string[];
  /** UMT5 tokens per prompt (WanPipeline's max_sequence_length). */
  maxSequenceLength: number;
  promptEmbedDim: number;
}

/** How a text model is conditioned: prompts through its encoders, or their precomputed embeddings. */
export interface TextInputs {
  /** The encoders' configs; null when model_index.json saves any text component as null. */
  encoders: { clip: ClipTextConfig; t5: T5Config } | null;
  /** The text components saved as null (why prompts are refused). */
  absent: string[];
  /** T5 tokens per prompt (FluxPipeline's max_sequence_length). */
  maxSequenceLength: number;
  /** CLIP tokens per prompt. */
  clipTokens: number;
  /** prompt_embeds [images, tokens, promptEmbedDim] and pooled_prompt_embeds [images, pooledDim]. */
  promptEmbedDim: number;
  pooledDim: number;
}

interface CardBase {
  dir: string;
  /** The classes of a class-conditional model; null for text models. */
  classes: ClassLabels | null;
  /** What a text model takes; null for class-conditional models. */
  text: TextInputs | UmT5TextInputs | null;
  /** What the model is, for users (what it was trained on); null when its directory does not say. */
  description: string | null;
  /** The image size the model draws by default (pixels). */
  size: { width: number; height: number };
  /** The sizes a request may ask for; null: `size` only. */
  sizes: SizeRule | null;
  /** Transformer blocks and the width of their stream: what cache options are checked against. */
  blocks: number;
  streamWidth: number;
  defaults: { steps: number; guidance: number };
  /** Request-selectable samplers; the first is the default. */
  samplers: readonly string[];
  /** How classifier-free guidance runs its two halves: one batched forward, or two (Wan). */
  cfgPasses: CfgPasses;
  /** What a text-to-video model takes beyond an image model's fields; null for image models. */
  video: VideoCard | null;
  /** The directory's cache calibrations (cache_calibration.json), set by readModelCard. */
  calibration?: ModelCalibration;
}

interface DiffusersComponents {
  vae: AutoencoderKlConfig;
  /** scheduler_config.json as stored (its _class_name picks the scheduler). */
  scheduler: Record<string, unknown>;
}

export type ClassCard =
  & CardBase
  & { classes: ClassLabels; text: null }
  & (
    | { pipeline: "MnistDiT"; config: DitConfig }
    | { pipeline: "DiTPipeline"; transformer: DitTransformerConfig } & DiffusersComponents
  );

export type FluxCard = CardBase & { classes: null; text: TextInputs } & {
  pipeline: "FluxPipeline";
  transformer: FluxTransformerConfig;
} & DiffusersComponents;

export type WanCard = CardBase & { classes: null; text: UmT5TextInputs; video: VideoCard } & {
  pipeline: "WanPipeline";
  transformer: WanTransformerConfig;
  vae: WanVaeConfig;
  /** scheduler_config.json as stored (its _class_name picks the scheduler). */
  scheduler: Record<string, unknown>;
};

export type TextCard = FluxCard | WanCard;

export type ModelCard = ClassCard | TextCard;

/** Latents per image at `size`: [C, H, W], or FLUX's packed [tokens, 4C]; what --latents must hold. */
export function latentShape(card: ModelCard, size: { width: number; height: number }): number[] {
  switch (card.pipeline) {
    case "MnistDiT":
      return [card.config.in_channels, card.config.sample_size, card.config.sample_size];
    case "DiTPipeline":
      return [card.transformer.in_channels, card.transformer.sample_size, card.transformer.sample_size];
    case "FluxPipeline": {
      const cell = 2 * vaeScale(card.vae);
      return [(size.height / cell) * (size.width / cell), card.transformer.in_channels];
    }
    case "WanPipeline":
      return wanLatentShape(card, size, card.video.frames);
  }
}

/** Wan's latents per video: [C, (frames - 1) / 4 + 1, H / 8, W / 8] for Wan2.1's VAE. */
export function wanLatentShape(card: WanCard, size: { width: number; height: number }, frames: number) {
  const { scale_factor_spatial: spatial, scale_factor_temporal: temporal } = card.vae;
  return [
    card.transformer.in_channels,
    (frames - 1) / temporal + 1,
    size.height / spatial,
    size.width / spatial,
  ];
}

/** Reads what `dir` is; throws naming the missing or invalid file. */
export async function readModelCard(dir: string): Promise<ModelCard> {
  const card = await readCard(dir);
  return { ...card, calibration: await readCalibration(dir) };
}

/** The directory's cache_calibration.json (none: no calibrations); a malformed one fails the model's load. */
async function readCalibration(dir: string): Promise<ModelCalibration> {
  const path = `${dir}/${CALIBRATION_FILE}`;
  const model = modelName(dir);
  if (!(await exists(path))) return { model, dir, file: null };
  try {
    return { model, dir, file: parseCalibrationFile(path, await readJsonFile(path)) };
  } catch (e) {
    throw new WeightsError(e instanceof Error ? e.message : String(e));
  }
}

/** A model's name: its directory's (what /v1/models lists). */
export function modelName(dir: string): string {
  return dir.replace(/\/+$/, "").split("/").pop() ?? dir;
}

async function readCard(dir: string): Promise<ModelCard> {
  if (!(await exists(dir))) throw new WeightsError(`${dir}: directory not found`);
  const indexPath = `${dir}/model_index.json`;
  if (await exists(indexPath)) {
    const index = await readJsonFile(indexPath) as Record<string, unknown>;
    const name = className(index);
    if (name === "DiTPipeline") return await ditPipelineCard(dir, index);
    if (name === "FluxPipeline") return await fluxPipelineCard(dir, index);
    if (name === "WanPipeline") return await wanPipelineCard(dir, index);
    throw new WeightsError(
      `${indexPath}: pipeline _class_name ${JSON.stringify(name)} is not supported; supported: ${
        PIPELINES.join(", ")
      }`,
    );
  }
  const configPath = `${dir}/config.json`;
  if (!(await exists(configPath))) {
    throw new WeightsError(`${dir}: not a diffusers model directory: no model_index.json or config.json`);
  }
  const json = await readJsonFile(configPath);
  const name = className(json);
  if (name === "MnistDiT") return mnistCard(dir, parseConfig(configPath, json, ditConfigSchema));
  throw new WeightsError(
    `${configPath}: _class_name ${JSON.stringify(name)} is not a pipeline; supported: ${
      PIPELINES.join(", ")
    } ` +
      "(a component directory runs with deno task forward)",
  );
}
