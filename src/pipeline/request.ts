// One generation request, resolved once against the model it names, by the one function that the CLI and
// the server both call: the sampling fields (one zod schema, one set of ranges and messages), the class of
// every image, the size, the sampler the model offers, and the cache options checked against the model's
// block list and the step count. Every failure names the field and what is allowed.
import { z } from "zod";
import { CacheOptionsError, resolveCacheOptions, type ResolvedCacheOptions } from "../cache/options.ts";
import { type ClassLabels, classWords, type ModelCard, type TextCard } from "./model_card.ts";
import { MAX_SEED } from "./noise.ts";
import { fitsSizeRule } from "./size_rule.ts";
import type { VideoInputs } from "./video/video_inputs.ts";

export const LIMITS = {
  steps: { min: 1, max: 1000 },
  guidance: { min: 0, max: 30 },
  true_cfg: { min: 1, max: 30 },
  seed: { min: 0, max: MAX_SEED },
  shift: { min: 0.01, max: 100 },
  eta: { min: 0, max: 1 },
  frames: { min: 1, max: 1001 },
  fps: { min: 1, max: 120 },
} as const;

/** Frames x width x height of one video, unless the caller sets its own limit: 81 frames of 1280x720. */
export const DEFAULT_MAX_VIDEO_PIXELS = 81 * 1280 * 720;

/** A number in LIMITS[name]; `field` is what messages call it (front ends that name it otherwise). */
export const ranged = (name: keyof typeof LIMITS, integer: boolean, field: string = name) => {
  const { min, max } = LIMITS[name];
  const kind = integer ? "an integer" : "a number";
  const base = z.number({ error: `${field} must be ${kind} in ${min}..${max}` });
  return (integer ? base.int({ error: `${field} must be an integer in ${min}..${max}` }) : base)
    .min(min, { error: `${field} must be in ${min}..${max}` })
    .max(max, { error: `${field} must be in ${min}..${max}` });
};

/** The sampling fields of every front end; absent steps, guidance and sampler take the model's defaults. */
export const samplingSchema = z.strictObject({
  steps: ranged("steps", true).optional(),
  seed: ranged("seed", true).default(0),
  guidance: ranged("guidance", false).optional(),
  /** diffusers' true_cfg_scale: above 1 (with a negative prompt), FLUX runs true classifier-free guidance. */
  true_cfg: ranged("true_cfg", false).default(1),
  sampler: z.string({ error: "sampler must be a string naming one of the model's samplers" }).optional(),
  shift: ranged("shift", false).default(1),
  eta: ranged("eta", false).default(0),
  /** Video models: frames per video (4k+1) and the frame rate of the file; image models refuse both. */
  frames: ranged("frames", true).optional(),
  fps: ranged("fps", true).optional(),
});

export type SamplingInput = z.infer<typeof samplingSchema>;

export interface RequestInput extends Omit<SamplingInput, "true_cfg"> {
  true_cfg?: number;
  /** Class of each image (class-conditional models): an id, or a name the model's labels know. */
  labels?: (string | number)[];
  /** Prompt of each image (text models). */
  prompts?: string[];
  /** Text models conditioned on precomputed prompt_embeds instead of prompts: the image count, and whether
   * negative_prompt_embeds come with them. */
  embeddings?: { images: number; negative: boolean };
  negativePrompt?: string;
  /** A strategy name or an object of cache options (src/cache/options.ts). */
  cache: unknown;
  /** "WxH"; the model's own size when absent. */
  size?: string;
  /** Which field the class or prompt came from, for messages ("label", "prompt", "class"). */
  labelField?: string;
  /** Video models: the most frames x width x height a request may ask for (DEFAULT_MAX_VIDEO_PIXELS). */
  maxVideoPixels?: number;
}

/** What a pipeline runs: everything resolved and checked. */
export interface GenerationRequest {
  images: number;
  /** Class id per image (class-conditional models; empty for text models). */
  labels: number[];
  /** Prompt per image (text models given text); null where embeddings (or classes) condition the images. */
  prompts: string[] | null;
  /** The negative prompt of true CFG; null without one (or where negative embeddings stand for it). */
  negativePrompt: string | null;
  /** Whether true CFG runs (text models: true_cfg > 1 with a negative prompt or its embeddings). */
  trueCfg: boolean;
  size: { width: number; height: number };
  steps: number;
  seed: number;
  guidance: number;
  true_cfg: number;
  sampler: string;
  shift: number;
  eta: number;
  cache: ResolvedCacheOptions;
  /** Video models: the frame count and rate of the one video; null for image models. */
  video: VideoInputs | null;
}

export class RequestError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "RequestError";
  }
}

/** Listing every class is only useful for small label sets. */
const LISTED_CLASSES = 20;

/** An id in range, or a name (case-insensitive) of one class; throws naming what is valid. */
export function resolveClass(classes: ClassLabels, label: string | number, field = "label"): number {
  const count = classes.names.length;
  if (typeof label === "number") {
    if (Number.isInteger(label) && label >= 0 && label < count) return label;
  } else {
    const wanted = label.trim().toLowerCase();
    const index = classes.aliases.findIndex((names) => names.some((n) => n.toLowerCase() === wanted));
    if (index >= 0) return index;
  }
  const valid = count <= LISTED_CLASSES
    ? `valid: ${classes.names.join(", ")}` + aliasList(classes)
    : `valid: a class id in 0..${count - 1} or one of its names (e.g. ${
      classes.names.slice(0, 3).join(", ")
    })`;
  throw new RequestError(field, `unknown class ${JSON.stringify(label)}; ${valid}`);
}

function aliasList(classes: ClassLabels): string {
  const others = classWords(classes);
  return others.length > 0 ? ` (or ${others.join(", ")})` : "";
}

const SIZE = /^\s*(\d+)\s*x\s*(\d+)\s*$/i;

/** The model's own size, or (for models that take several) a WxH within its rule. */
function resolveSize(card: ModelCard, size: string | undefined): { width: number; height: number } {
  const own = `${card.size.width}x${card.size.height}`;
  if (size === undefined) return card.size;
  const match = SIZE.exec(size);
  const [width, height] = match ? [Number(match[1]), Number(match[2])] : [NaN, NaN];
  const rule = card.sizes;
  if (!rule) {
    if (width === card.size.width && height === card.size.height) return card.size;
    throw new RequestError("size", `model draws ${own} images only; allowed sizes: ${own}`);
  }
  const allowed = `"WxH" with width and height positive multiples of ${rule.multiple} and width x height ` +
    `at most ${rule.maxPixels} pixels (e.g. ${own})`;
  if (!match) throw new RequestError("size", `${JSON.stringify(size)} is not a size; allowed: ${allowed}`);
  if (!fitsSizeRule({ width, height }, rule)) {
    throw new RequestError("size", `${width}x${height} is not allowed; allowed: ${allowed}`);
  }
  return { width, height };
}

interface Conditioning {
  images: number;
  labels: number[];
  prompts: string[] | null;
  negativePrompt: string | null;
  trueCfg: boolean;
}

function classConditioning(card: ModelCard & { classes: ClassLabels }, input: RequestInput): Conditioning {
  const field = input.labelField ?? "label";
  if (input.prompts || input.embeddings) {
    throw new RequestError(
      field,
      `${card.pipeline} is class-conditional: it takes a class, not text or embeddings`,
    );
  }
  if (input.negativePrompt !== undefined) {
    throw new RequestError(
      "negative_prompt",
      `${card.pipeline} takes no negative prompt (its guidance runs the null class)`,
    );
  }
  if ((input.true_cfg ?? 1) !== 1) {
    throw new RequestError("true_cfg", `${card.pipeline} has no true CFG; guidance sets its guidance scale`);
  }
  const labels = (input.labels ?? []).map((label) => resolveClass(card.classes, label, field));
  if (labels.length === 0) throw new RequestError(field, "give the class of at least one image");
  return { images: labels.length, labels, prompts: null, negativePrompt: null, trueCfg: false };
}

function textConditioning(card: TextCard, input: RequestInput): Conditioning {
  const field = input.labelField ?? "prompt";
  if (input.labels) throw new RequestError(field, `${card.pipeline} takes a text prompt, not a class`);
  if (!input.prompts === !input.embeddings) {
    throw new RequestError(field, "give either prompts or prompt_embeds, not both or neither");
  }
  const text = input.prompts !== undefined || input.negativePrompt !== undefined;
  if (text && !card.text.encoders) {
    throw new RequestError(
      input.prompts ? field : "negative_prompt",
      `this model takes precomputed ${
        card.pipeline === "FluxPipeline" ? "prompt_embeds and pooled_prompt_embeds" : "prompt_embeds"
      } only: model_index.json saves ` +
        `${card.text.absent.join(", ")} as null`,
    );
  }
  const negative = input.negativePrompt !== undefined || input.embeddings?.negative === true;
  if (card.pipeline === "WanPipeline") checkCfgNegative(card, input, negative);
  else checkTrueCfgNegative(input, negative);
  const images = input.prompts?.length ?? input.embeddings!.images;
  if (images === 0) throw new RequestError(field, "give the prompt of at least one image");
  if (input.prompts?.some((p) => p.trim() === "")) {
    throw new RequestError(field, "is empty; give the text of the image (or precomputed prompt_embeds)");
  }
  return {
    images,
    labels: [],
    prompts: input.prompts ?? null,
    negativePrompt: input.negativePrompt ?? null,
    trueCfg: negative && card.pipeline !== "WanPipeline",
  };
}

/** FLUX: a negative prompt runs true CFG (true_cfg above 1), and only then. */
function checkTrueCfgNegative(input: RequestInput, negative: boolean): void {
  const trueCfgScale = input.true_cfg ?? 1;
  if (negative && trueCfgScale <= 1) {
    throw new RequestError(
      input.negativePrompt !== undefined ? "negative_prompt" : "negative_prompt_embeds",
      "applies only with true CFG: set true_cfg (diffusers' true_cfg_scale) above 1",
    );
  }
  if (trueCfgScale > 1 && !negative) {
    throw new RequestError(
      "true_cfg",
      "true CFG above 1 needs a negative_prompt (or negative_prompt_embeds)",
    );
  }
}

/**
 * Wan: guidance above 1 runs classifier-free guidance against the negative prompt ("" when none is given,
 * as WanPipeline does); embeddings without a text encoder need their negative embeddings.
 */
function checkCfgNegative(card: TextCard, input: RequestInput, negative: boolean) {
  if ((input.true_cfg ?? 1) !== 1) {
    throw new RequestError("true_cfg", `${card.pipeline} has no true_cfg; guidance above 1 runs its CFG`);
  }
  const guided = (input.guidance ?? card.defaults.guidance) > 1;
  if (negative && !guided) {
    throw new RequestError(
      input.negativePrompt !== undefined ? "negative_prompt" : "negative_prompt_embeds",
      "applies only with classifier-free guidance: set guidance above 1",
    );
  }
  if (guided && input.embeddings && !input.embeddings.negative && !card.text.encoders) {
    throw new RequestError(
      "negative_prompt_embeds",
      `guidance above 1 needs them: this model has no text encoder to encode the empty negative prompt`,
    );
  }
}

/** A video model's frames and rate (one video per request, 4k+1 frames, within the pixel limit); null for images. */
function resolveVideo(
  card: ModelCard,
  input: RequestInput,
  size: { width: number; height: number },
  images: number,
): VideoInputs | null {
  if (!card.video) {
    const given = (["frames", "fps"] as const).find((field) => input[field] !== undefined);
    if (given) {
      throw new RequestError(given, `${card.pipeline} draws images, not videos: it takes no ${given}`);
    }
    return null;
  }
  if (images !== 1) {
    throw new RequestError("n", `${card.pipeline} draws one video per request, not ${images}`);
  }
  const frames = input.frames ?? card.video.frames;
  const k = card.video.framesPerLatent;
  if ((frames - 1) % k !== 0) {
    const rule =
      `${k}k+1 frames (1, ${k + 1}, ${2 * k + 1}, ..., ${card.video.frames}): its VAE packs ${k} ` +
      "frames into each latent frame after the first";
    throw new RequestError("frames", `${frames} is not ${k}k+1; ${card.pipeline} takes ${rule}`);
  }
  const pixels = frames * size.width * size.height;
  const limit = input.maxVideoPixels ?? DEFAULT_MAX_VIDEO_PIXELS;
  if (pixels > limit) {
    throw new RequestError(
      "frames",
      `${frames} frames of ${size.width}x${size.height} are ${pixels} pixels; the limit is ${limit} ` +
        "(frames x width x height): ask for fewer frames or a smaller size",
    );
  }
  return { frames, fps: input.fps ?? card.video.fps };
}

export function resolveRequest(card: ModelCard, input: RequestInput): GenerationRequest {
  const size = resolveSize(card, input.size);
  const conditioning = card.classes ? classConditioning(card, input) : textConditioning(card, input);
  const video = resolveVideo(card, input, size, conditioning.images);
  const sampler = input.sampler ?? card.samplers[0];
  if (!card.samplers.includes(sampler)) {
    throw new RequestError("sampler", `${JSON.stringify(sampler)} is not one of ${card.samplers.join(", ")}`);
  }
  const steps = input.steps ?? card.defaults.steps;
  let cache: ResolvedCacheOptions;
  try {
    const options = typeof input.cache === "string" ? { strategy: input.cache } : input.cache;
    cache = resolveCacheOptions(options, {
      blocks: card.blocks,
      steps,
      channels: card.streamWidth,
      cfgPasses: card.cfgPasses,
      pipeline: card.pipeline,
      sampler,
      calibration: card.calibration,
    });
  } catch (e) {
    if (e instanceof CacheOptionsError) throw new RequestError("cache", e.message);
    throw e;
  }
  return {
    ...conditioning,
    size,
    steps,
    seed: input.seed,
    guidance: input.guidance ?? card.defaults.guidance,
    true_cfg: input.true_cfg ?? 1,
    sampler,
    shift: input.shift,
    eta: input.eta,
    cache,
    video,
  };
}
