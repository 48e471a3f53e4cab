// Server settings from the environment and command-line flags (flags win), validated in one schema so a bad
// value stops start-up with a message naming the setting and its range.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";
import { DEFAULT_MAX_VIDEO_PIXELS } from "../pipeline/request.ts";
import { formatIssues } from "../validation/issues.ts";

export interface ServerOptions {
  port: number;
  host: string;
  modelsDir: string;
  /** Model loaded at start-up and used when a request names none. */
  defaultModel: string;
  apiKey?: string;
  /** Jobs that may wait behind the running one before requests get 429. */
  maxQueue: number;
  requestTimeoutS: number;
  corsOrigin?: string;
  /** Video jobs kept (queued, running, or finished and not yet expired) before POST /v1/videos gets 429. */
  maxVideoJobs: number;
  /** Seconds a finished video job (and its file) is kept before it is deleted. */
  videoRetentionS: number;
  /** Seconds a video job may wait and run before it fails (504). */
  videoTimeoutS: number;
  /** Frames x width x height a video request may ask for. */
  maxVideoPixels: number;
}

export class ServerOptionsError extends Error {}

/** The embedded models, found beside the code so that a compiled binary reads them from its own files. */
export const BUNDLED_MODELS_DIR = fileURLToPath(new URL("../../weights", import.meta.url));

const int = (name: string, min: number, max: number, fallback: number) => {
  const error = `${name} must be an integer in ${min}..${max}`;
  return z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error }).default(fallback);
};
const text = (name: string) => z.string().trim().min(1, { error: `${name} must not be empty` });

const settingsSchema = z.object({
  PORT: int("PORT", 0, 65535, 8000),
  HOST: text("HOST").default("127.0.0.1"),
  MODELS_DIR: text("MODELS_DIR").default(BUNDLED_MODELS_DIR),
  MODEL: text("MODEL").default("mnist-flux"),
  API_KEY: text("API_KEY").optional(),
  MAX_QUEUE: int("MAX_QUEUE", 0, 10_000, 16),
  REQUEST_TIMEOUT_S: int("REQUEST_TIMEOUT_S", 1, 86_400, 300),
  CORS_ORIGIN: text("CORS_ORIGIN").optional(),
  MAX_VIDEO_JOBS: int("MAX_VIDEO_JOBS", 1, 10_000, 64),
  VIDEO_RETENTION_S: int("VIDEO_RETENTION_S", 1, 7 * 86_400, 3600),
  VIDEO_TIMEOUT_S: int("VIDEO_TIMEOUT_S", 1, 7 * 86_400, 3 * 3600),
  MAX_VIDEO_PIXELS: int("MAX_VIDEO_PIXELS", 1, 1e12, DEFAULT_MAX_VIDEO_PIXELS),
});

type SettingName = keyof z.infer<typeof settingsSchema>;
const SETTINGS = Object.keys(settingsSchema.shape) as SettingName[];

/** --port, --models-dir, ... for PORT, MODELS_DIR, ... */
const flagName = (setting: string) => setting.toLowerCase().replaceAll("_", "-");

export const USAGE = `usage: deno task serve [${SETTINGS.map((s) => `--${flagName(s)} V`).join("] [")}]` +
  ` (or the environment variables ${SETTINGS.join(", ")})`;

export function parseServerOptions(env: Record<string, string | undefined>, args: string[]): ServerOptions {
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({
      args,
      options: Object.fromEntries(SETTINGS.map((s) => [flagName(s), { type: "string" as const }])),
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    throw new ServerOptionsError(`${(e as Error).message}\n${USAGE}`);
  }
  const merged: Record<string, string | undefined> = {};
  for (const s of SETTINGS) {
    const value = flags[flagName(s)] ?? env[s];
    if (typeof value === "string" && value !== "") merged[s] = value;
  }
  const parsed = settingsSchema.safeParse(merged);
  if (!parsed.success) throw new ServerOptionsError(formatIssues(parsed.error));
  const v = parsed.data;
  return {
    port: v.PORT,
    host: v.HOST,
    modelsDir: v.MODELS_DIR,
    defaultModel: v.MODEL,
    apiKey: v.API_KEY,
    maxQueue: v.MAX_QUEUE,
    requestTimeoutS: v.REQUEST_TIMEOUT_S,
    corsOrigin: v.CORS_ORIGIN,
    maxVideoJobs: v.MAX_VIDEO_JOBS,
    videoRetentionS: v.VIDEO_RETENTION_S,
    videoTimeoutS: v.VIDEO_TIMEOUT_S,
    maxVideoPixels: v.MAX_VIDEO_PIXELS,
  };
}

export const DEFAULT_SERVER_OPTIONS: ServerOptions = parseServerOptions({}, []);
