// Request and response shapes of the HTTP API. Sampling fields are the pipeline's own schema (one set of
// ranges and messages for CLI and HTTP); cache options are validated by src/cache/options.ts after this
// coarse shape check, because their ranges depend on the model and the step count. The OpenAPI document is
// generated from these schemas.
import { z } from "zod";
import { CACHE_STRATEGIES, cacheOptionNames, type CacheStrategyName } from "../cache/options.ts";
import { samplingSchema } from "../pipeline/request.ts";

export const MAX_IMAGES = 8;

const imageCount = (() => {
  const error = `n must be an integer in 1..${MAX_IMAGES}`;
  return z.number({ error }).int({ error }).min(1, { error }).max(MAX_IMAGES, { error }).default(1);
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

export const generateBodySchema = samplingSchema.extend({
  model: modelName.optional(),
  label: z.union([z.string(), z.number().int()], {
    error: "label must be a class name or word (string) or a class index (integer)",
  }).describe('Class of the model: "7", "seven" or 7'),
  n: imageCount,
  cache: cacheSchema.default("none"),
});
export type GenerateBody = z.infer<typeof generateBodySchema>;

export const generateQuerySchema = z.object({
  stream: z.enum(["true", "false"], { error: 'stream must be "true" or "false"' }).optional()
    .describe("true: answer Server-Sent Events (step events, then result)"),
});

export const imagesBodySchema = z.strictObject({
  prompt: z.string({ error: "prompt must be a string naming a class of the model" }),
  n: imageCount,
  response_format: z.literal("b64_json", { error: 'response_format must be "b64_json"' }).default("b64_json"),
  model: modelName.optional(),
  size: z.string({ error: 'size must be a string like "28x28"' }).optional(),
  user: z.string().optional(),
});
export type ImagesBody = z.infer<typeof imagesBodySchema>;

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
});

export const generateResultSchema = z.object({
  model: z.string(),
  label: z.string(),
  n: z.number(),
  seed: z.number(),
  steps: z.number(),
  images: z.array(z.string()).describe("base64 PNG per image"),
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

export const imagesResultSchema = z.object({
  created: z.number(),
  data: z.array(z.object({ b64_json: z.string() })),
});

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
    inputs: z.array(z.string()).describe("What a request conditions it on"),
    classes: z.array(z.string()).describe("Class names by id; `label` or `prompt` names one"),
    class_words: z.array(z.string()).describe("Other accepted names of the classes"),
    sizes: z.array(z.string()).describe('Image sizes it draws, "WxH"'),
    blocks: z.number(),
    samplers: z.array(z.string()),
    defaults: z.object({ steps: z.number(), guidance: z.number() }),
    strategies: z.array(z.string()),
    presets: z.array(z.string()),
    scm_presets: z.array(z.string()),
    limits: z.record(z.string(), range),
  })),
});
