// Routes that never wait for the GPU: liveness, readiness, metrics, the model list, the playground page.
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { gpuDecidedDispatches } from "../../cache/decision_path.ts";
import { CACHE_STRATEGIES } from "../../cache/options.ts";
import { SCM_PRESET_NAMES } from "../../cache/scm.ts";
import { classWords, type ModelCard } from "../../pipeline/model_card.ts";
import { EMBEDDING_NAMES } from "../../pipeline/pipelines/flux_conditioning.ts";
import { LIMITS } from "../../pipeline/request.ts";
import { VIDEO_FORMATS } from "../../pipeline/video/encode.ts";
import type { AppDeps } from "../app.ts";
import { errorSchema, MAX_IMAGES, MAX_PARTIAL_IMAGES, modelsSchema } from "../schemas.ts";

/** What a request may condition the model on, by diffusers' argument names. */
function inputsOf(card: ModelCard): string[] {
  if (card.classes) return ["class_labels", "latents"];
  const prompts = card.text.encoders ? ["prompt", "negative_prompt"] : [];
  return [...prompts, ...EMBEDDING_NAMES, "latents"];
}

/** A video model's defaults and the formats this server writes; null for an image model. */
function videoOf(card: ModelCard, deps: AppDeps) {
  if (!card.video) return null;
  const formats = VIDEO_FORMATS.filter((format) => deps.videos.settings.formats[format] === null);
  const { frames, fps, framesPerLatent } = card.video;
  return { frames, fps, frames_per_latent: framesPerLatent, formats };
}

/** Ranges of the request fields; frames and fps only where the model draws videos. */
function limitsOf(card: ModelCard) {
  const { frames, fps, ...image } = LIMITS;
  return card.video ? { ...image, frames, fps } : image;
}

/** The adapter's decision path costs (src/cache/decision_path.ts), once the worker measured them. */
function cacheDecisions(deps: AppDeps) {
  const costs = deps.worker.status().info?.decisionCosts;
  if (!costs) return null;
  return {
    empty_dispatch_ms: costs.emptyDispatchMs,
    indirect_extra_ms: costs.indirectExtraMs,
    readback_ms: costs.readbackMs,
    gpu_up_to_dispatches: gpuDecidedDispatches(costs),
  };
}

/** Fn/Bn splits named by the cache doc (0.2.x and 1.x defaults, FBCache); any F<n>B<n> is accepted. */
const SPLIT_PRESETS = ["F1B0", "F8B0", "F8B8"];

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { "application/json": { schema } },
  description,
});

export function registerInfoRoutes(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/health",
      summary: "Process alive",
      responses: { 200: json(z.object({ status: z.literal("ok") }), "alive") },
    }),
    (c) => c.json({ status: "ok" as const }, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/ready",
      summary: "Model loaded and GPU device healthy",
      responses: {
        200: json(z.object({ status: z.literal("ready"), model: z.string(), adapter: z.string() }), "ready"),
        503: json(errorSchema, "not ready (starting, restarting after a crash, or no GPU)"),
      },
    }),
    (c) => {
      const status = deps.worker.status();
      if (status.state === "ready" && status.info) {
        return c.json({
          status: "ready" as const,
          model: deps.settings.defaultModel,
          adapter: status.info.adapter,
        }, 200);
      }
      return c.json({ error: status.error ?? `GPU worker is ${status.state}` }, 503);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/metrics",
      summary: "Prometheus metrics",
      responses: {
        200: { content: { "text/plain": { schema: z.string() } }, description: "Prometheus text" },
      },
    }),
    async (c) => c.text(await deps.metrics.text(), 200, { "content-type": deps.metrics.contentType }),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/models",
      summary:
        "Models (OpenAI list shape), their inputs, classes, sizes, block count, cache strategies and limits",
      responses: { 200: json(modelsSchema, "models under MODELS_DIR") },
    }),
    async (c) => {
      const data = (await deps.catalog.list()).map(({ id, card, created }) => ({
        id,
        object: "model" as const,
        created,
        owned_by: "ditserve",
        pipeline: card.pipeline,
        description: card.description,
        inputs: inputsOf(card),
        classes: card.classes?.names ?? [],
        class_words: card.classes ? classWords(card.classes) : [],
        sizes: [`${card.size.width}x${card.size.height}`],
        size_rule: card.sizes && { multiple: card.sizes.multiple, max_pixels: card.sizes.maxPixels },
        max_sequence_length: card.text?.maxSequenceLength ?? null,
        blocks: card.blocks,
        samplers: [...card.samplers],
        defaults: card.defaults,
        video: videoOf(card, deps),
        strategies: CACHE_STRATEGIES,
        cache_decisions: cacheDecisions(deps),
        presets: SPLIT_PRESETS,
        scm_presets: SCM_PRESET_NAMES,
        limits: {
          ...limitsOf(card),
          n: { min: 1, max: MAX_IMAGES },
          partial_images: { min: 0, max: MAX_PARTIAL_IMAGES },
        },
      }));
      return c.json({ object: "list" as const, data }, 200);
    },
  );

  app.get("/", (c) => {
    if (deps.playground === null) return c.json({ error: "the playground page is not installed" }, 404);
    return c.html(deps.playground);
  });
}
