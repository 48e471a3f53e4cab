// Video jobs in OpenAI's video API shape: POST /v1/videos checks the request (400 naming the field) and answers
// 202 at once with the queued job; GET /v1/videos/{id} its status and progress, /content the file once it is
// completed (409 with the progress before), /events its progress as Server-Sent Events, DELETE drops it
// (cancelling it when it has not finished). The jobs themselves live in src/server/video_jobs.ts.
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import type { Context } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import { VIDEO_CONTENT_TYPES } from "../../pipeline/video/encode.ts";
import type { AppDeps } from "../app.ts";
import {
  ERROR_RESPONSES,
  errorSchema,
  jsonBody,
  type Video,
  type VideoBody,
  videoBodySchema,
  videoDeletedSchema,
  videoSchema,
} from "../schemas.ts";
import type { VideoJob } from "../video_jobs.ts";
import { resolveSubmission } from "./submission.ts";

const epochSeconds = (ms: number | null) => ms === null ? null : Math.floor(ms / 1000);

const ERROR_CODES: Partial<Record<number, string>> = {
  400: "invalid_request",
  408: "cancelled",
  409: "cancelled",
  503: "unavailable",
  504: "timeout",
};

/** Steps done as 0..99 while it runs: 100 waits for the decode and the file. */
function progressOf(job: VideoJob): number {
  if (job.status === "completed") return 100;
  return Math.min(99, Math.floor((100 * job.stepsDone) / job.submission.request.steps));
}

function videoObject(job: VideoJob): Video {
  const { model, request, videoFormat } = job.submission;
  const video = request.video!;
  return {
    id: job.id,
    object: "video",
    model: model.id,
    status: job.status,
    progress: progressOf(job),
    step: job.stepsDone,
    steps: request.steps,
    created_at: Math.floor(job.createdAt / 1000),
    completed_at: epochSeconds(job.completedAt),
    expires_at: epochSeconds(job.expiresAt),
    prompt: request.prompts?.[0] ?? null,
    size: `${request.size.width}x${request.size.height}`,
    frames: video.frames,
    fps: video.fps,
    seconds: String(Number((video.frames / video.fps).toFixed(3))),
    seed: request.seed,
    response_format: videoFormat,
    generate_seconds: job.generateSeconds,
    cached_steps: job.cachedSteps,
    cfg_cached_steps: job.cfgCachedSteps,
    error: job.error && {
      message: job.error.message,
      code: ERROR_CODES[job.error.status] ?? "internal",
      field: job.error.field ?? null,
    },
  };
}

async function toSubmission(deps: AppDeps, body: VideoBody) {
  const model = await deps.catalog.get(body.model ?? deps.settings.defaultModel);
  const { model: _m, prompt, negative_prompt, response_format, ...sampling } = body;
  const submission = resolveSubmission(model, {
    sampling: {
      ...sampling,
      negativePrompt: negative_prompt,
      maxVideoPixels: deps.videos.settings.maxVideoPixels,
    },
    n: 1,
    prompt,
    partialImages: 0,
    streamed: false,
    layout: "each",
    videoFormat: response_format,
  });
  return { ...submission, videoFormat: response_format };
}

const idParam = z.object({ id: z.string().describe("The job's id, video_...") });

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { "application/json": { schema } },
  description,
});

const NOT_FOUND = { 404: json(errorSchema, "no video with this id (never created, deleted, or expired)") };

const notReadySchema = errorSchema.extend({
  status: videoSchema.shape.status,
  progress: z.number(),
});

/** The job's events until it ends: the current state at once, one per change (status, step), then the end. */
function streamVideo(c: Context, deps: AppDeps, id: string) {
  const opened = Promise.withResolvers<SSEStreamingApi>();
  const ended = Promise.withResolvers<void>();
  let written: Promise<void> = Promise.resolve();
  const send = (job: VideoJob) => {
    const data = JSON.stringify(videoObject(job));
    written = written.then(async () =>
      (await opened.promise).writeSSE({ event: `video.${job.status}`, data })
    );
    if (job.status === "completed" || job.status === "failed") ended.resolve();
  };
  // Watched before the stream opens, so that no change between the lookup and the first write is lost.
  const unwatch = deps.videos.watch(id, send);
  send(deps.videos.get(id));
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => ended.resolve());
    opened.resolve(stream);
    await ended.promise;
    unwatch();
    await written;
  });
}

export function registerVideoRoutes(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/videos",
      summary: "Queue a video of a text-to-video model (Wan2.1); answers 202 with the job at once",
      description: "The job runs on the GPU queue the image routes use and does not depend on this request " +
        "(a client may disconnect and come back with the id). `frames` must be 4k+1 (the model's VAE packs 4 " +
        "frames into each latent frame after the first), `size` follows the model's rule (multiples of 16), " +
        "and frames x width x height may not exceed MAX_VIDEO_PIXELS. Poll GET /v1/videos/{id}, or follow " +
        "GET /v1/videos/{id}/events, then fetch GET /v1/videos/{id}/content.",
      request: { body: jsonBody(videoBodySchema) },
      responses: {
        202: json(videoSchema, "the queued job (Location: /v1/videos/{id})"),
        ...ERROR_RESPONSES,
        429: json(errorSchema, "too many videos held (MAX_VIDEO_JOBS) or the queue is full (Retry-After)"),
      },
    }),
    async (c) => {
      const job = deps.videos.create(await toSubmission(deps, c.req.valid("json")));
      return c.json(videoObject(job), 202, { Location: `/v1/videos/${job.id}` });
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/videos/{id}",
      summary: "A video job: status (queued, in_progress, completed, failed), progress, and its error",
      request: { params: idParam },
      responses: { 200: json(videoSchema, "the job"), ...NOT_FOUND },
    }),
    (c) => c.json(videoObject(deps.videos.get(c.req.valid("param").id)), 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/videos/{id}/content",
      summary: "The video file of a completed job (video/mp4, image/gif or image/webp)",
      request: { params: idParam },
      responses: {
        200: {
          content: Object.fromEntries(
            Object.values(VIDEO_CONTENT_TYPES).map((
              type,
            ) => [type, { schema: z.string().describe("binary") }]),
          ),
          description: "the file, in the job's response_format",
        },
        409: json(
          notReadySchema,
          "the job has not completed (queued, in_progress with its progress, or failed)",
        ),
        ...NOT_FOUND,
      },
    }),
    (c) => {
      const job = deps.videos.get(c.req.valid("param").id);
      if (job.status === "completed" && job.bytes) {
        const format = job.submission.videoFormat;
        return c.body(job.bytes.slice(), 200, {
          "content-type": VIDEO_CONTENT_TYPES[format],
          "content-disposition": `inline; filename="${job.id}.${format}"`,
        });
      }
      const progress = progressOf(job);
      const why = job.status === "failed"
        ? `failed: ${job.error?.message}`
        : `${job.status}, step ${job.stepsDone} of ${job.submission.request.steps} (${progress}%)`;
      return c.json({
        error: `video ${job.id} has no content yet: it is ${why}`,
        status: job.status,
        progress,
      }, 409);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/videos/{id}/events",
      summary: "A video job's progress as Server-Sent Events",
      description:
        "Each event is named `video.<status>` and carries the job as GET /v1/videos/{id} answers " +
        "it: the current state at once, a `video.in_progress` event per denoising step, then " +
        "`video.completed` or `video.failed`, after which the stream closes.",
      request: { params: idParam },
      responses: {
        200: {
          content: { "text/event-stream": { schema: videoSchema.describe("data of each event") } },
          description: "the events",
        },
        ...NOT_FOUND,
      },
    }),
    (c) => streamVideo(c, deps, c.req.valid("param").id),
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/videos/{id}",
      summary: "Delete a video job and its file; a queued or running one is cancelled",
      request: { params: idParam },
      responses: { 200: json(videoDeletedSchema, "deleted"), ...NOT_FOUND },
    }),
    (c) => {
      const job = deps.videos.delete(c.req.valid("param").id);
      return c.json({ id: job.id, object: "video.deleted" as const, deleted: true as const }, 200);
    },
  );
}
