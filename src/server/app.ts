// createApp(deps): the whole HTTP surface as a Hono app with no side effects (no port, no environment, no
// worker of its own), so tests drive it through app.request() and start.ts serves it on a socket.
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, Next } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { matchedRoutes } from "hono/route";
import { secureHeaders } from "hono/secure-headers";
import type { z } from "zod";
import { formatIssues } from "../validation/issues.ts";
import { ApiError, errorResponse } from "./api_error.ts";
import { limitBodies } from "./body_limit.ts";
import type { GenerationService } from "./generation_service.ts";
import type { GpuWorker } from "./gpu_worker_client.ts";
import type { ServerMetrics } from "./metrics.ts";
import type { ModelCatalog } from "./model_catalog.ts";
import { registerGenerateRoutes } from "./routes/generate.ts";
import { registerImagesRoute } from "./routes/images.ts";
import { registerInfoRoutes } from "./routes/info.ts";
import { registerVideoRoutes } from "./routes/videos.ts";
import type { VideoJobs } from "./video_jobs.ts";

export interface AppSettings {
  /** When set, every /v1/* route needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** When set, CORS answers for this origin ("*" for any); otherwise no CORS headers at all. */
  corsOrigin?: string;
  /** Model used when a request names none. */
  defaultModel: string;
}

export interface AppDeps {
  catalog: ModelCatalog;
  generator: GenerationService;
  /** The jobs of POST /v1/videos. */
  videos: VideoJobs;
  worker: Pick<GpuWorker, "status">;
  metrics: ServerMetrics;
  settings: AppSettings;
  /** The playground page (src/server/playground.html); null when it is not there. */
  playground: string | null;
}

/** zod failures (body, query) become a 400 naming the first field at fault. */
function rejectInvalid(result: { success: boolean; error?: z.ZodError }): void {
  if (result.success || !result.error) return;
  const first = result.error.issues[0];
  const field = first?.path.length
    ? String(first.path[0])
    : (first as { keys?: string[] })?.keys?.[0] ?? "body";
  throw new ApiError(400, formatIssues(result.error), field);
}

function answerError(e: Error, c: Context): Response {
  if (e instanceof HTTPException) {
    if (e.res) return e.res;
    const message = e.status === 415
      ? "request body must be JSON: send Content-Type: application/json"
      : e.message;
    return errorResponse(c, new ApiError(e.status as ApiError["status"], message, "body"));
  }
  const error = ApiError.from(e);
  if (error.status === 500) console.error(`${c.req.method} ${c.req.path}: ${e.stack ?? e.message}`);
  return errorResponse(c, error);
}

function countRequests(metrics: ServerMetrics) {
  return async (c: Context, next: Next) => {
    await next();
    const last = matchedRoutes(c).at(-1);
    const route = last && last.method !== "ALL" ? last.path : "unmatched";
    metrics.request(c.req.method, route, c.res.status);
  };
}

function requireApiKey(token: string) {
  const refuse = (message: string) => (c: Context) => c.json({ error: message, field: "authorization" }, 401);
  return bearerAuth({
    token,
    noAuthenticationHeader: { message: refuse("missing API key: send Authorization: Bearer <API_KEY>") },
    invalidAuthenticationHeader: { message: refuse("Authorization header must be: Bearer <API_KEY>") },
    invalidToken: { message: refuse("wrong API key") },
  });
}

export function createApp(deps: AppDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: rejectInvalid });
  app.onError(answerError);
  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.use(countRequests(deps.metrics));
  app.use(secureHeaders());
  if (deps.settings.corsOrigin) app.use(cors({ origin: deps.settings.corsOrigin }));
  if (deps.settings.apiKey) app.use("/v1/*", requireApiKey(deps.settings.apiKey));
  app.use("/v1/*", limitBodies());
  registerInfoRoutes(app, deps);
  registerGenerateRoutes(app, deps);
  registerImagesRoute(app, deps);
  registerVideoRoutes(app, deps);
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "ditserve",
      version: "1",
      description: "Diffusion Transformers on WebGPU with cache acceleration",
    },
  });
  return app;
}
