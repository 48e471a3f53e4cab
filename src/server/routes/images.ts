// POST /v1/images/generations in OpenAI's images shape: `prompt` is the text of a text model (FLUX), or
// names a class of a class-conditional one; diffusers' sampling fields come by their pipeline argument
// names (num_inference_steps, guidance_scale, true_cfg_scale). `stream: true` answers OpenAI's image
// streaming events: image_generation.partial_image for each partial image of each image, then one
// image_generation.completed per image.
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { SSEMessage } from "hono/streaming";
import type { ApiError } from "../api_error.ts";
import type { AppDeps } from "../app.ts";
import type { GenerationOutcome, Submission } from "../generation_service.ts";
import {
  ERROR_RESPONSES,
  type ImagesBody,
  imagesBodySchema,
  imagesResultSchema,
  imageStreamEventSchema,
  jsonBody,
} from "../schemas.ts";
import type { Preview } from "../worker_protocol.ts";
import { streamJob } from "./stream.ts";
import { resolveSubmission } from "./submission.ts";

const now = () => Math.floor(Date.now() / 1000);
const sizeOf = (submission: Submission) =>
  `${submission.request.size.width}x${submission.request.size.height}`;

async function toSubmission(deps: AppDeps, body: ImagesBody): Promise<Submission> {
  const model = await deps.catalog.get(body.model ?? deps.settings.defaultModel);
  const classes = model.card.classes !== null;
  return resolveSubmission(model, {
    sampling: {
      steps: body.num_inference_steps,
      seed: body.seed,
      guidance: body.guidance_scale,
      true_cfg: body.true_cfg_scale,
      negativePrompt: body.negative_prompt,
      size: body.size === "auto" ? undefined : body.size,
      shift: 1,
      eta: 0,
      cache: body.cache,
    },
    n: body.n,
    ...(classes ? { label: body.prompt } : { prompt: body.prompt }),
    labelField: "prompt",
    fieldNames: { true_cfg: "true_cfg_scale" },
    partialImages: body.partial_images,
    streamed: body.stream,
    layout: "each",
  });
}

/** What OpenAI's partial and completed events share; this server's images are opaque PNGs. */
const eventFields = (submission: Submission, b64: string, image: number) => ({
  b64_json: b64,
  created_at: now(),
  size: sizeOf(submission),
  quality: "auto",
  background: "opaque",
  output_format: "png",
  image_index: image,
});

const event = (data: { type: string } & Record<string, unknown>): SSEMessage => ({
  event: data.type,
  data: JSON.stringify(data),
});

function streamEvents(submission: Submission) {
  return {
    preview: (preview: Preview, index: number) =>
      preview.pngs.map((png, image) =>
        event({
          type: "image_generation.partial_image",
          ...eventFields(submission, png.toBase64(), image),
          partial_image_index: index,
        })
      ),
    done: ({ output }: GenerationOutcome) =>
      output.pngs.map((png, image) =>
        event({
          type: "image_generation.completed",
          ...eventFields(submission, png.toBase64(), image),
          ...(output.notes.length > 0 ? { notes: output.notes } : {}),
        })
      ),
    // The error shape OpenAI's clients raise from a stream: {"error": {"message"}}.
    failed: (error: ApiError) =>
      event({ type: "error", error: { message: error.message, param: error.field ?? null } }),
  };
}

export function registerImagesRoute(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/images/generations",
      summary: "OpenAI images API shape: a text prompt, or the class of a class-conditional model",
      description: "Sampling fields by diffusers' names: num_inference_steps, guidance_scale, " +
        "negative_prompt with true_cfg_scale above 1 (text models), seed, and `cache` as /v1/generate " +
        "takes it. `stream: true` answers Server-Sent Events in OpenAI's image streaming shape: " +
        "`image_generation.partial_image` events (`partial_images` per image, decoded from the latents at " +
        "steps spread over the run), then one `image_generation.completed` per image (or an `error` event " +
        '`{"type": "error", "error": {"message", "param"}}`).',
      request: { body: jsonBody(imagesBodySchema) },
      responses: {
        200: {
          content: {
            "application/json": { schema: imagesResultSchema },
            "text/event-stream": { schema: imageStreamEventSchema.describe("data of each event") },
          },
          description: "the images",
        },
        ...ERROR_RESPONSES,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const submission = await toSubmission(deps, body);
      if (body.stream) return streamJob(c, deps, submission, streamEvents(submission));
      const { output } = await deps.generator.submit(submission, { signal: c.req.raw.signal });
      return c.json({
        created: now(),
        data: output.pngs.map((png) => ({ b64_json: png.toBase64() })),
        size: sizeOf(submission),
        output_format: "png" as const,
        ...(output.notes.length > 0 ? { notes: output.notes } : {}),
      }, 200);
    },
  );
}
