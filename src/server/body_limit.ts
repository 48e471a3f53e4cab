// Request bodies are small JSON (64 KiB), except where /v1/generate's `tensors` field carries a base64
// safetensors file (FLUX.1-dev's prompt_embeds alone are 8 MiB as float32): that route reads up to 32 MiB,
// and refuses a body over 64 KiB that turns out to carry no tensors. The limit is known only once the JSON
// is parsed, so the route reads the larger size either way; what it accepts is what the limit promises.
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ApiError } from "./api_error.ts";

export const MAX_BODY_BYTES = 64 * 1024;
export const MAX_TENSORS_BODY_BYTES = 32 * 1024 * 1024;
const TENSORS_ROUTE = "/v1/generate";

const over = (bytes: number, unit: string) => `request body is over ${bytes} bytes (${unit})`;
const SMALL = over(MAX_BODY_BYTES, "64 KiB");
const LARGE = over(MAX_TENSORS_BODY_BYTES, "32 MiB");

function limit(maxSize: number, message: string): MiddlewareHandler {
  return bodyLimit({ maxSize, onError: (c) => c.json({ error: message, field: "body" }, 413) });
}

/** Every /v1/* body: 64 KiB, or up to 32 MiB on the route that takes tensors. */
export function limitBodies(): MiddlewareHandler {
  const small = limit(MAX_BODY_BYTES, SMALL);
  const large = limit(MAX_TENSORS_BODY_BYTES, LARGE);
  return (c, next) => (c.req.path === TENSORS_ROUTE ? large : small)(c, next);
}

/** Throws 413 when a body without tensors is over MAX_BODY_BYTES. */
export async function refuseLargeWithoutTensors(c: Context, hasTensors: boolean): Promise<void> {
  if (hasTensors) return;
  const text = await c.req.text(); // cached by the JSON validator: no second read
  // A UTF-8 body has at least as many bytes as its text has UTF-16 units; encode only when that does not tell.
  if (text.length <= MAX_BODY_BYTES && new TextEncoder().encode(text).length <= MAX_BODY_BYTES) return;
  throw new ApiError(
    413,
    `${SMALL}; only a body with \`tensors\` (a base64 safetensors file) may be larger, up to 32 MiB`,
    "body",
  );
}
