// Every error the API answers with: a status and a JSON body naming the field at fault, so a client can
// point at the input that was wrong.
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly field?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  /** Anything thrown while serving a request; errors that are not ApiErrors are the server's fault. */
  static from(e: unknown): ApiError {
    return e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error)?.message ?? e}`);
  }
}

export interface ErrorBody {
  error: string;
  field?: string;
}

export function errorBody(error: ApiError): ErrorBody {
  return error.field === undefined ? { error: error.message } : { error: error.message, field: error.field };
}

export function errorResponse(c: Context, error: ApiError): Response {
  return c.json(errorBody(error), error.status, error.headers);
}
