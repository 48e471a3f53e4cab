// POST /v1/generate (PNG, JSON, or Server-Sent Events with one event per step) and the OpenAI-shaped
// POST /v1/images/generations. Validation happens before anything is queued: body shape (zod), then the
// model, the class and the cache options.
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type SSEMessage, type SSEStreamingApi, streamSSE } from "hono/streaming";
import { Buffer } from "node:buffer";
import { z } from "zod";
import type { GenerationRequest } from "../../pipeline/request.ts";
import { RequestError, type RequestInput, resolveRequest } from "../../pipeline/request.ts";
import { ApiError, errorBody } from "../api_error.ts";
import type { AppDeps } from "../app.ts";
import type { GenerationOutcome, Submission } from "../generation_service.ts";
import type { ModelEntry } from "../model_catalog.ts";
import {
  errorSchema,
  type GenerateBody,
  generateBodySchema,
  generateQuerySchema,
  type GenerateResult,
  generateResultSchema,
  imagesBodySchema,
  imagesResultSchema,
  stepEventSchema,
} from "../schemas.ts";

const jsonError = (description: string) => ({
  content: { "application/json": { schema: errorSchema } },
  description,
});

const ERRORS = {
  400: jsonError("invalid input"),
  401: jsonError("missing or wrong API key"),
  404: jsonError("unknown model"),
  413: jsonError("body over 64 KiB"),
  429: jsonError("queue full (Retry-After)"),
  503: jsonError("GPU worker crashed, device lost, not ready or shutting down"),
  504: jsonError("request timed out"),
};

const jsonBody = <T extends z.ZodType>(schema: T) => ({
  required: true,
  content: { "application/json": { schema } },
});

const base64 = (png: Uint8Array) => Buffer.from(png).toString("base64");

function resultBody(submission: Submission, outcome: GenerationOutcome): GenerateResult {
  const { model, request } = submission;
  return {
    model: model.id,
    label: model.card.classes?.names[request.labels[0]] ?? "",
    n: request.images,
    seed: request.seed,
    steps: request.steps,
    images: outcome.output.pngs.map(base64),
    cache: outcome.output.cache,
    timings: outcome.timings,
    adapter: outcome.adapter,
  };
}

/** The request resolved against its model (pipeline/request.ts); every failure is a 400 naming the field. */
function resolve(model: ModelEntry, input: RequestInput): GenerationRequest {
  try {
    return resolveRequest(model.card, input);
  } catch (e) {
    if (e instanceof RequestError) throw new ApiError(400, e.message, e.field);
    throw e;
  }
}

async function toSubmission(
  deps: AppDeps,
  body: GenerateBody,
  layout: Submission["layout"],
): Promise<Submission> {
  const model = await deps.catalog.get(body.model ?? deps.settings.defaultModel);
  const { model: _m, label, n, ...rest } = body;
  return { model, request: resolve(model, { ...rest, labels: new Array(n).fill(label) }), layout };
}

/**
 * Steps and the result are written in order; 429 and other refusals happen before the stream opens. Hono's
 * SSE writes never throw (a closed stream swallows them), so the callback cannot fail.
 */
function streamGeneration(c: Context, deps: AppDeps, submission: Submission) {
  const closed = new AbortController();
  const opened = Promise.withResolvers<SSEStreamingApi>();
  let written: Promise<void> = Promise.resolve();
  const send = (message: SSEMessage) => {
    written = written.then(async () => (await opened.promise).writeSSE(message));
  };
  const pending = deps.generator.submit(submission, {
    signal: AbortSignal.any([c.req.raw.signal, closed.signal]),
    onStep: (progress) => send({ event: "step", data: JSON.stringify(progress) }),
  });
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => closed.abort());
    opened.resolve(stream);
    send(
      await pending.then(
        (outcome) => ({ event: "result", data: JSON.stringify(resultBody(submission, outcome)) }),
        (e) => ({ event: "error", data: JSON.stringify(errorBody(ApiError.from(e))) }),
      ),
    );
    await written;
  });
}

export function registerGenerateRoutes(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/generate",
      summary: "Generate images of one class",
      description: "Accept: image/png answers the PNG (images side by side, X-Seconds and X-Cached-Steps " +
        "headers); ?stream=true answers Server-Sent Events: `step` per step, then `result` (or `error`).",
      request: { body: jsonBody(generateBodySchema), query: generateQuerySchema },
      responses: {
        200: {
          content: {
            "application/json": { schema: generateResultSchema },
            "image/png": { schema: z.string().describe("binary PNG") },
            "text/event-stream": { schema: stepEventSchema.describe("data of each `step` event") },
          },
          description: "the images",
        },
        ...ERRORS,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const wantsPng = (c.req.header("accept") ?? "").includes("image/png");
      const submission = await toSubmission(deps, body, wantsPng ? "grid" : "each");
      if (c.req.valid("query").stream === "true") return streamGeneration(c, deps, submission);
      const outcome = await deps.generator.submit(submission, { signal: c.req.raw.signal });
      if (!wantsPng) return c.json(resultBody(submission, outcome), 200);
      return c.body(outcome.output.pngs[0].slice(), 200, {
        "content-type": "image/png",
        "x-seconds": String(outcome.timings.generate_seconds),
        "x-cached-steps": String(outcome.output.cache.cachedSteps.length),
      });
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/images/generations",
      summary: "OpenAI images API shape: the prompt names a class of the model",
      request: { body: jsonBody(imagesBodySchema) },
      responses: {
        200: { content: { "application/json": { schema: imagesResultSchema } }, description: "the images" },
        ...ERRORS,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const model = await deps.catalog.get(body.model ?? deps.settings.defaultModel);
      const request = resolve(model, {
        labels: new Array(body.n).fill(body.prompt),
        labelField: "prompt",
        size: body.size,
        seed: 0,
        shift: 1,
        eta: 0,
        cache: "none",
      });
      const outcome = await deps.generator.submit({ model, request, layout: "each" }, {
        signal: c.req.raw.signal,
      });
      return c.json({
        created: Math.floor(Date.now() / 1000),
        data: outcome.output.pngs.map((png) => ({ b64_json: base64(png) })),
      }, 200);
    },
  );
}
