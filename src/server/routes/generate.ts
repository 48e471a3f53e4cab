// POST /v1/generate, the native route: PNG, JSON, or Server-Sent Events (step and partial_image events,
// then the result). Class models take `label`, text models `prompt` or precomputed embeddings in `tensors`.
// Validation happens before anything is queued: body shape (zod), then the model, the conditioning, the
// size, the tensors and the cache options (routes/submission.ts).
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { ApiError, errorBody } from "../api_error.ts";
import type { AppDeps } from "../app.ts";
import { refuseLargeWithoutTensors } from "../body_limit.ts";
import type { GenerationOutcome, Submission } from "../generation_service.ts";
import {
  ERROR_RESPONSES,
  type GenerateBody,
  generateBodySchema,
  generateQuerySchema,
  type GenerateResult,
  generateResultSchema,
  jsonBody,
  partialImageEventSchema,
  stepEventSchema,
} from "../schemas.ts";
import type { Preview } from "../worker_protocol.ts";
import { streamJob } from "./stream.ts";
import { resolveSubmission } from "./submission.ts";

const base64 = (png: Uint8Array) => png.toBase64();

function resultBody(submission: Submission, outcome: GenerationOutcome): GenerateResult {
  const { model, request } = submission;
  return {
    model: model.id,
    label: model.card.classes?.names[request.labels[0]] ?? null,
    prompt: request.prompts?.[0] ?? null,
    size: `${request.size.width}x${request.size.height}`,
    n: request.images,
    seed: request.seed,
    steps: request.steps,
    images: outcome.output.pngs.map(base64),
    notes: outcome.output.notes,
    cache: outcome.output.cache,
    timings: outcome.timings,
    adapter: outcome.adapter,
  };
}

async function toSubmission(
  deps: AppDeps,
  body: GenerateBody,
  streamed: boolean,
  layout: Submission["layout"],
) {
  const model = await deps.catalog.get(body.model ?? deps.settings.defaultModel);
  const { model: _m, label, prompt, tensors, n, partial_images, negative_prompt, ...sampling } = body;
  return resolveSubmission(model, {
    sampling: { ...sampling, negativePrompt: negative_prompt },
    n,
    label,
    prompt,
    tensors,
    partialImages: partial_images,
    streamed,
    layout,
  });
}

const streamEvents = (submission: Submission) => ({
  step: (progress: object) => ({ event: "step", data: JSON.stringify(progress) }),
  preview: (preview: Preview, index: number) => [{
    event: "partial_image",
    data: JSON.stringify({
      step: preview.step,
      partial_image_index: index,
      images: preview.pngs.map(base64),
    }),
  }],
  done: (outcome: GenerationOutcome) => [{
    event: "result",
    data: JSON.stringify(resultBody(submission, outcome)),
  }],
  failed: (error: ApiError) => ({ event: "error", data: JSON.stringify(errorBody(error)) }),
});

export function registerGenerateRoutes(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/generate",
      summary: "Generate images of a class, a prompt, or precomputed prompt embeddings",
      description: "Class-conditional models take `label`; text models (FLUX) take `prompt` (with " +
        "`negative_prompt` and `true_cfg` above 1 for true CFG) or, in `tensors`, a base64 safetensors file " +
        "of precomputed prompt_embeds and pooled_prompt_embeds (and latents, for any model). A body with " +
        "`tensors` may be up to 32 MiB; any other is limited to 64 KiB. Accept: image/png answers the PNG " +
        "(images side by side, X-Seconds and X-Cached-Steps headers); ?stream=true answers Server-Sent " +
        "Events: `step` per step, `partial_image` for each of `partial_images`, then `result` (or `error`).",
      request: { body: jsonBody(generateBodySchema), query: generateQuerySchema },
      responses: {
        200: {
          content: {
            "application/json": { schema: generateResultSchema },
            "image/png": { schema: z.string().describe("binary PNG") },
            "text/event-stream": {
              schema: z.union([stepEventSchema, partialImageEventSchema])
                .describe("data of each `step` and `partial_image` event; `result` carries the JSON answer"),
            },
          },
          description: "the images",
        },
        ...ERROR_RESPONSES,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      await refuseLargeWithoutTensors(c, body.tensors !== undefined);
      const wantsPng = (c.req.header("accept") ?? "").includes("image/png");
      const streamed = c.req.valid("query").stream === "true";
      const submission = await toSubmission(deps, body, streamed, wantsPng && !streamed ? "grid" : "each");
      if (streamed) return streamJob(c, deps, submission, streamEvents(submission));
      const outcome = await deps.generator.submit(submission, { signal: c.req.raw.signal });
      if (!wantsPng) return c.json(resultBody(submission, outcome), 200);
      return c.body(outcome.output.pngs[0].slice(), 200, {
        "content-type": "image/png",
        "x-seconds": String(outcome.timings.generate_seconds),
        "x-cached-steps": String(outcome.output.cache.cachedSteps.length),
      });
    },
  );
}
