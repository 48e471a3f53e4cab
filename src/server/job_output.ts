// A finished run as the GPU worker sends it back: the images as PNGs (side by side, or one each), or a video
// model's frames as the file the job asks for (src/pipeline/video/encode.ts).
import type { Decoded } from "../pipeline/generate.ts";
import { encodeImagesPng } from "../pipeline/image.ts";
import { encodeVideo } from "../pipeline/video/encode.ts";
import type { GenerationJob, JobOutput } from "./worker_protocol.ts";

/** Decoded images as PNGs: one with them side by side ("grid"), or one each. */
export function encodePngs(decoded: Decoded, layout: GenerationJob["layout"]): Uint8Array[] {
  if (layout === "grid") return [encodeImagesPng(decoded.images, decoded.shape)];
  const [n, c, h, w] = decoded.shape;
  const per = c * h * w;
  return Array.from(
    { length: n },
    (_, i) => encodeImagesPng(decoded.images.subarray(i * per, (i + 1) * per), [1, c, h, w]),
  );
}

/** A video job's frames ([frames, 3, H, W]) as its file; any other job's images as PNGs. */
export async function encodeOutput(
  decoded: Decoded,
  job: Pick<GenerationJob, "layout" | "videoFormat" | "request">,
): Promise<Pick<JobOutput, "pngs" | "video">> {
  const { videoFormat, request } = job;
  if (videoFormat === undefined) return { pngs: encodePngs(decoded, job.layout) };
  if (request.video === null) throw new Error(`a ${videoFormat} job needs a video model's request`);
  const video = await encodeVideo(decoded.images, decoded.shape, {
    format: videoFormat,
    fps: request.video.fps,
  });
  return { pngs: [], video };
}

/** What postMessage transfers instead of copying. */
export function transferables(output: Pick<JobOutput, "pngs" | "video">): ArrayBuffer[] {
  return [...output.pngs, ...(output.video ? [output.video] : [])].map((bytes) =>
    bytes.buffer as ArrayBuffer
  );
}
