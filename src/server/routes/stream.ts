// A generation answered as Server-Sent Events, in whichever event shapes a route speaks: progress and
// partial images while the job runs, then its result or its error. Refusals (429 and the like) happen
// before the stream opens.
import type { Context } from "hono";
import { type SSEMessage, type SSEStreamingApi, streamSSE } from "hono/streaming";
import { ApiError } from "../api_error.ts";
import type { AppDeps } from "../app.ts";
import type { GenerationOutcome, Submission } from "../generation_service.ts";
import type { Preview, StepProgress } from "../worker_protocol.ts";

export interface StreamEvents {
  /** When given, the job reports every step, one step behind (its decision log read while the next runs). */
  step?: (progress: StepProgress) => SSEMessage;
  /** `index`: the preview's place among the submission's partial images. */
  preview: (preview: Preview, index: number) => SSEMessage[];
  done: (outcome: GenerationOutcome) => SSEMessage[];
  failed: (error: ApiError) => SSEMessage;
}

/** Hono's SSE writes never throw (a closed stream swallows them), so the callback cannot fail. */
export function streamJob(c: Context, deps: AppDeps, submission: Submission, events: StreamEvents) {
  const closed = new AbortController();
  const opened = Promise.withResolvers<SSEStreamingApi>();
  let written: Promise<void> = Promise.resolve();
  const send = (messages: SSEMessage[]) => {
    written = written.then(async () => {
      const stream = await opened.promise;
      for (const message of messages) await stream.writeSSE(message);
    });
  };
  const { step } = events;
  const pending = deps.generator.submit(submission, {
    signal: AbortSignal.any([c.req.raw.signal, closed.signal]),
    onStep: step && ((progress) => send([step(progress)])),
    onPreview: (preview) => send(events.preview(preview, submission.previews.indexOf(preview.step))),
  });
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => closed.abort());
    opened.resolve(stream);
    send(await pending.then(events.done, (e) => [events.failed(ApiError.from(e))]));
    await written;
  });
}
