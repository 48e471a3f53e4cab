// A video pipeline's frames as a file: MP4 (H.264, yuv420p; fragmented, so that ffmpeg can write it to a pipe
// and a browser still plays it) and animated WebP through ffmpeg, GIF in TypeScript (gif.ts) so that it works
// without ffmpeg.
import { type FfmpegEncoder, ffmpegLacks, runFfmpeg } from "./ffmpeg.ts";
import { checkFrames, eachFrame, type FrameShape } from "./frames.ts";
import { encodeGif } from "./gif.ts";

export const VIDEO_FORMATS = ["mp4", "gif", "webp"] as const;
export type VideoFormat = (typeof VIDEO_FORMATS)[number];

export const VIDEO_CONTENT_TYPES: Record<VideoFormat, string> = {
  mp4: "video/mp4",
  gif: "image/gif",
  webp: "image/webp",
};

/** The ffmpeg encoder each format needs; null: encoded here. */
const ENCODERS: Record<VideoFormat, FfmpegEncoder | null> = {
  mp4: "libx264",
  webp: "libwebp_anim",
  gif: null,
};

export interface VideoEncoding {
  format: VideoFormat;
  fps: number;
  /** The ffmpeg program (tests name a missing one). */
  ffmpeg?: string;
}

/** H.264 at constant quality 18 (visually lossless for most content); yuv420p is what every player decodes. */
const MP4_OUTPUT = [
  ...["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"],
  // No B-frames: a fragmented MP4 has no edit list to hide their reordering delay, so with them the first
  // frame would show two frames late (ffprobe: start_time 0.25 s at 8 fps).
  "-bf",
  "0",
  // A fragmented MP4 needs no seek back to write its index, so it can go to a pipe.
  ...["-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"],
];

const WEBP_OUTPUT = ["-c:v", "libwebp_anim", "-quality", "90", "-loop", "0", "-f", "webp"];

const even = (n: number) => n + (n % 2);

/** Frames [frames, 3, H, W] in [-1, 1] -> the file's bytes. Rejects with FfmpegError when ffmpeg fails. */
export async function encodeVideo(
  frames: Float32Array,
  shape: FrameShape,
  encoding: VideoEncoding,
): Promise<Uint8Array> {
  checkFrames(frames, shape);
  const { format, fps } = encoding;
  if (format === "gif") return encodeGif(frames, shape, fps);
  // 4:2:0 chroma needs even sides; odd ones are padded (frames.ts repeats the edge).
  const [, , height, width] = shape;
  const size = format === "mp4" ? { width: even(width), height: even(height) } : { width, height };
  const input = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", `${size.width}x${size.height}`];
  const args = [...input, "-framerate", String(fps), "-i", "pipe:0", "-an"];
  const output = format === "mp4" ? MP4_OUTPUT : WEBP_OUTPUT;
  return await runFfmpeg([...args, ...output, "pipe:1"], eachFrame(frames, shape, { size }), encoding.ffmpeg);
}

/** Per format: null when it can be encoded here, otherwise why not (ffmpeg missing, with the fix). */
export async function videoFormatSupport(ffmpeg = "ffmpeg"): Promise<Record<VideoFormat, string | null>> {
  const needed = VIDEO_FORMATS.map((format) => ENCODERS[format]).filter((e): e is FfmpegEncoder =>
    e !== null
  );
  const lacking = await ffmpegLacks(needed, ffmpeg);
  const why = (format: VideoFormat) => {
    const encoder = ENCODERS[format];
    const reason = encoder && lacking.get(encoder);
    return reason ? `${format} needs ffmpeg: ${reason}; gif works without it` : null;
  };
  return Object.fromEntries(VIDEO_FORMATS.map((format) => [format, why(format)])) as Record<
    VideoFormat,
    string | null
  >;
}
