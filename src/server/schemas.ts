// Request and response shapes of the HTTP API. Sampling fields are the pipeline's own schema (one set of
// ranges and messages for CLI and HTTP); cache options are validated by src/cache/options.ts after this
// coarse shape check, because their ranges depend on the model and the step count; the conditioning (class,
// prompt, tensors) and the size are checked against the model by src/pipeline/request.ts. The OpenAPI
// document is generated from these schemas.
import { z } from "zod";
import { DECISION_PATHS } from "../cache/decision_path.ts";
import { CACHE_STRATEGIES, cacheOptionNames, type CacheStrategyName } from "../cache/options.ts";
import { ranged, samplingSchema } from "../pipeline/request.ts";
import { VIDEO_FORMATS } from "../pipeline/video/encode.ts";

export const MAX_IMAGES = 8;
/** OpenAI's range for partial_images. */
export const MAX_PARTIAL_IMAGES = 3;

const imageCount = (() => {
  const error = `n must be an integer in 1..${MAX_IMAGES}`;
  return z.number({ error }).int({ error }).min(1, { error }).max(MAX_IMAGES, { error }).default(1);
})();

const partialImages = (() => {
  const error = `partial_images must be an integer in 0..${MAX_PARTIAL_IMAGES}`;
  return z.number({ error }).int({ error }).min(0, { error }).max(MAX_PARTIAL_IMAGES, { error }).default(0)
    .describe(
      "Partial images of a stream, decoded from the latents at steps spread evenly before the last; fewer " +
        "when there are too few steps",
    );
})();

const strategies = CACHE_STRATEGIES as [CacheStrategyName, ...CacheStrategyName[]];

const cacheSchema = z.union([
  z.enum(strategies),
  z.looseObject({ strategy: z.enum(strategies) }),
], {
  error: `cache must be one of ${CACHE_STRATEGIES.join(", ")} or an object {"strategy": ..., ...options}`,
}).describe(
  "A strategy name, or an object with `strategy` and that strategy's options, checked against the model's " +
    "blocks and the step count. Options: " +
    CACHE_STRATEGIES.filter((name) => name !== "none")
      .map((name) => `${name}: ${cacheOptionNames(name).filter((o) => o !== "strategy").join(", ")}`)
      .join("; "),
);

const modelName = z.string({ error: "model must be a string" }).describe("Directory name under MODELS_DIR");

const size = z.string({ error: 'size must be a string "WxH" such as "1024x768"' })
  .describe("Width x height in pixels; the model's own size when absent (see /v1/models: sizes, size_rule)");

const negativePrompt = z.string({ error: "negative_prompt must be a string" })
  .describe("Text models: what true CFG steers away from; needs true CFG above 1");

const tensors = z.string({ error: "tensors must be a base64 string of a safetensors file" }).describe(
  "A base64 safetensors file (the format `deno task generate --prompt-embeds` and `--latents` read; F32, " +
    "F16 or BF16) holding tensors by diffusers' argument names: text models take prompt_embeds " +
    "[1 or n, tokens, joint_attention_dim] with pooled_prompt_embeds [1 or n, pooled_projection_dim] instead " +
    "of a prompt (negative_prompt_embeds and negative_pooled_prompt_embeds with true CFG), one image per row " +
    "or n of one row; any model takes latents, the starting noise in the pipeline's layout (FLUX: packed " +
    "[images, (H/16)(W/16), 64]). A body with tensors may be up to 32 MiB, any other 64 KiB. Shapes are " +
    "checked before queueing; an error names the tensor as `field`.",
);

export const generateBodySchema = samplingSchema.extend({
  model: modelName.optional(),
  label: z.union([z.string(), z.number().int()], {
    error: "label must be a class name or word (string) or a class index (integer)",
  }).optional().describe('Class-conditional models: the class, "7", "seven" or 7'),
  prompt: z.string({ error: "prompt must be a string" }).optional().describe("Text models: the prompt"),
  negative_prompt: negativePrompt.optional(),
  size: size.optional(),
  tensors: tensors.optional(),
  n: imageCount,
  partial_images: partialImages,
  cache: cacheSchema.default("none"),
});
export type GenerateBody = z.infer<typeof generateBodySchema>;

export const generateQuerySchema = z.object({
  stream: z.enum(["true", "false"], { error: 'stream must be "true" or "false"' }).optional()
    .describe("true: answer Server-Sent Events (step and partial_image events, then result)"),
});

/** OpenAI's image request, with diffusers' sampling fields under their pipeline argument names. */
export const imagesBodySchema = z.strictObject({
  prompt: z.string({
    error: "prompt must be a string: the text of a text model, or a class of a class-conditional one",
  }),
  n: imageCount,
  response_format: z.literal("b64_json", { error: 'response_format must be "b64_json"' }).default("b64_json"),
  output_format: z.literal("png", { error: 'output_format must be "png"' }).optional(),
  model: modelName.optional(),
  size: size.or(z.literal("auto")).optional(),
  seed: ranged("seed", true).default(0),
  num_inference_steps: ranged("steps", true, "num_inference_steps").optional(),
  guidance_scale: ranged("guidance", false, "guidance_scale").optional(),
  negative_prompt: negativePrompt.optional(),
  true_cfg_scale: ranged("true_cfg", false, "true_cfg_scale").optional(),
  stream: z.boolean({ error: "stream must be a boolean" }).default(false)
    .describe("true: answer Server-Sent Events in OpenAI's image streaming shape"),
  partial_images: partialImages,
  cache: cacheSchema.default("none"),
  user: z.string().optional(),
});
export type ImagesBody = z.infer<typeof imagesBodySchema>;

/** POST /v1/videos: OpenAI's video request shape, with frames and fps for its seconds. */
export const videoBodySchema = samplingSchema.omit({ true_cfg: true }).extend({
  prompt: z.string({ error: "prompt must be a string" }).describe("What the video shows"),
  model: modelName.optional().describe("A video model's directory name under MODELS_DIR"),
  negative_prompt: z.string({ error: "negative_prompt must be a string" }).optional()
    .describe('What classifier-free guidance (guidance above 1) steers away from; "" when absent'),
  size: size.optional(),
  cache: cacheSchema.default("none"),
  response_format: z.enum(VIDEO_FORMATS, {
    error: `response_format must be one of ${VIDEO_FORMATS.join(", ")}`,
  })
    .default("mp4").describe(
      "mp4 (H.264) and webp need ffmpeg on the server (see /v1/models: video.formats); gif never does",
    ),
});
export type VideoBody = z.infer<typeof videoBodySchema>;

export const videoSchema = z.object({
  id: z.string(),
  object: z.literal("video"),
  model: z.string(),
  status: z.enum(["queued", "in_progress", "completed", "failed"]),
  progress: z.number().describe("0..100: steps done of steps (100 only once the file is written)"),
  step: z.number().describe("Denoising steps done"),
  steps: z.number(),
  created_at: z.number().describe("Seconds since the epoch"),
  completed_at: z.number().nullable(),
  expires_at: z.number().nullable().describe(
    "When a finished video and its file are deleted (VIDEO_RETENTION_S)",
  ),
  prompt: z.string().nullable(),
  size: z.string(),
  frames: z.number(),
  fps: z.number(),
  seconds: z.string().describe("Playing time, frames / fps, as OpenAI's video API spells it"),
  seed: z.number(),
  response_format: z.enum(VIDEO_FORMATS),
  generate_seconds: z.number().nullable().describe("GPU seconds, once completed"),
  cached_steps: z.array(z.number()).nullable().describe(
    "Steps the cache strategy reused, once completed (the conditional pass' with separate CFG caches)",
  ),
  cfg_cached_steps: z.array(z.number()).nullable().describe(
    "The unconditional pass' reused steps, where CFG runs as separate passes with their own caches",
  ),
  error: z.object({ message: z.string(), code: z.string(), field: z.string().nullable() }).nullable()
    .describe("Why it failed; code: invalid_request, cancelled, timeout, unavailable or internal"),
});
export type Video = z.infer<typeof videoSchema>;

export const videoDeletedSchema = z.object({
  id: z.string(),
  object: z.literal("video.deleted"),
  deleted: z.literal(true),
});

export const errorSchema = z.object({
  error: z.string().describe("What was wrong, naming the field and its allowed range"),
  field: z.string().optional(),
});

const cacheStatsSchema = z.object({
  strategy: z.string(),
  steps: z.number(),
  cachedSteps: z.array(z.number()),
  computedSteps: z.array(z.number()),
  blocksExecuted: z.number(),
  blocksTotal: z.number(),
  memoryBytes: z.number(),
  decisions: z.enum(DECISION_PATHS).optional().describe(
    "How DBCache's and DBPrune's per-step decisions reached the host: gpu (decided on the GPU, the log read " +
      "behind the loop) or readback (read mid-step); the cheaper on this adapter (see /v1/models: " +
      "cache_decisions), never chosen by streaming",
  ),
  images: z.array(z.object({ cachedSteps: z.array(z.number()), computedSteps: z.array(z.number()) }))
    .optional()
    .describe("Per image, where the images of one batch decided apart (TeaCache, EasyCache)"),
});

const notes = z.array(z.string()).describe("What the pipeline changed in the request (a truncated prompt)");

export const generateResultSchema = z.object({
  model: z.string(),
  label: z.string().nullable().describe("The class drawn (class-conditional models)"),
  prompt: z.string().nullable().describe("The prompt (text models given one)"),
  size: z.string(),
  n: z.number(),
  seed: z.number(),
  steps: z.number(),
  images: z.array(z.string()).describe("base64 PNG per image"),
  notes,
  cache: cacheStatsSchema,
  timings: z.object({ queue_seconds: z.number(), generate_seconds: z.number(), total_seconds: z.number() }),
  adapter: z.string(),
});
export type GenerateResult = z.infer<typeof generateResultSchema>;

export const stepEventSchema = z.object({
  step: z.number(),
  steps: z.number(),
  cached: z.boolean(),
  diff: z.number().nullable(),
  blocks_run: z.number(),
});

export const partialImageEventSchema = z.object({
  step: z.number().describe("The step after which the latents were decoded"),
  partial_image_index: z.number(),
  images: z.array(z.string()).describe("base64 PNG per image"),
});

export const imagesResultSchema = z.object({
  created: z.number(),
  data: z.array(z.object({ b64_json: z.string() })),
  size: z.string(),
  output_format: z.literal("png"),
  notes: notes.optional().describe("Present when the pipeline changed the request (a truncated prompt)"),
});

/** The fields OpenAI's partial and completed image events share. */
const imageEvent = {
  b64_json: z.string(),
  created_at: z.number(),
  size: z.string(),
  quality: z.literal("auto"),
  background: z.literal("opaque"),
  output_format: z.literal("png"),
  image_index: z.number().describe("Which of the n images (not in OpenAI's shape, which streams one)"),
};

export const imageStreamEventSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("image_generation.partial_image"),
    ...imageEvent,
    partial_image_index: z.number(),
  }),
  z.object({ type: z.literal("image_generation.completed"), ...imageEvent, notes: notes.optional() }),
]);

const range = z.object({ min: z.number(), max: z.number() });

/** The OpenAI models list shape (`client.models.list()` reads `data`), with what this server knows beside it. */
export const modelsSchema = z.object({
  object: z.literal("list"),
  data: z.array(z.object({
    id: z.string(),
    object: z.literal("model"),
    created: z.number().describe("Seconds since the epoch: when the model directory last changed"),
    owned_by: z.string(),
    pipeline: z.string().describe("The diffusers pipeline (or embedded model) class that runs it"),
    description: z.string().nullable().describe(
      "What the model is and was trained on, from its directory (model_index.json's _ditserve.description)",
    ),
    inputs: z.array(z.string()).describe(
      "What a request may condition it on: class_labels (`label`), prompt and negative_prompt (models with " +
        "text encoders), prompt_embeds, pooled_prompt_embeds, negative_prompt_embeds, " +
        "negative_pooled_prompt_embeds and latents (in `tensors`)",
    ),
    classes: z.array(z.string()).describe("Class names by id; `label` or `prompt` names one"),
    class_words: z.array(z.string()).describe("Other accepted names of the classes"),
    sizes: z.array(z.string()).describe('The model\'s own size "WxH", the default'),
    size_rule: z.object({ multiple: z.number(), max_pixels: z.number() }).nullable().describe(
      "null: the model draws its own size only; otherwise any WxH with both multiples of `multiple` and " +
        "W x H at most `max_pixels`",
    ),
    max_sequence_length: z.number().nullable().describe("Text models: T5 tokens per prompt (longer is cut)"),
    blocks: z.number(),
    samplers: z.array(z.string()),
    defaults: z.object({ steps: z.number(), guidance: z.number() }),
    video: z.object({
      frames: z.number(),
      fps: z.number(),
      frames_per_latent: z.number().describe("k of the frame rule: a video has k x n + 1 frames"),
      formats: z.array(z.enum(VIDEO_FORMATS)).describe("response_format values this server can write"),
    }).nullable().describe("Video models (POST /v1/videos): default frames and fps; null for image models"),
    strategies: z.array(z.string()),
    cache_decisions: z.object({
      empty_dispatch_ms: z.number().describe("A zero-size indirect dispatch on this adapter"),
      indirect_extra_ms: z.number().describe(
        "What running a dispatch indirectly adds to running it directly",
      ),
      readback_ms: z.number().describe(
        "A small readback after a submit: what a read-back decision waits for",
      ),
      gpu_up_to_dispatches: z.number().describe(
        "A step is decided on the GPU while its conditional dispatches (empty when cached, indirect when " +
          "computed) are at most this many per readback the other path would make; otherwise it is read back " +
          "(the run's cache.decisions says which)",
      ),
    }).nullable().describe(
      "What the cache decision paths cost here, measured once at start-up (null until the GPU worker is ready)",
    ),
    presets: z.array(z.string()),
    scm_presets: z.array(z.string()),
    limits: z.record(z.string(), range),
  })),
});

const jsonError = (description: string) => ({
  content: { "application/json": { schema: errorSchema } },
  description,
});

export const ERROR_RESPONSES = {
  400: jsonError("invalid input"),
  401: jsonError("missing or wrong API key"),
  404: jsonError("unknown model"),
  413: jsonError("body over 64 KiB (32 MiB for /v1/generate with tensors)"),
  429: jsonError("queue full (Retry-After)"),
  503: jsonError("GPU worker crashed, device lost, not ready or shutting down"),
  504: jsonError("request timed out"),
};

export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  required: true,
  content: { "application/json": { schema } },
});
