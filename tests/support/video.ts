// What the video tests share: frames that move and differ per channel (so that a swapped channel, a flipped
// row order or a dropped frame shows), and reading an encoded video back with ffprobe and ffmpeg (Debian's
// ffmpeg package, which tools/system_packages.sh installs).
import { frameBytes, type FrameShape } from "../../src/pipeline/video/frames.ts";

/** [frames, 3, height, width] in [-1, 1]: smooth colour waves that drift with the frame index. */
export function movingFrames(frames: number, width: number, height: number): Float32Array {
  const out = new Float32Array(frames * 3 * height * width);
  for (let f = 0; f < frames; f++) {
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const phase = (2 * Math.PI * (x + 2 * f)) / width + 2 * c;
          const value = 0.8 * Math.sin(phase) * Math.cos((Math.PI * y) / (2 * height)) + 0.1 * c - 0.1;
          out[((f * 3 + c) * height + y) * width + x] = value;
        }
      }
    }
  }
  return out;
}

/** Every frame as interleaved 8-bit RGB, one after another: what a lossless round trip would give back. */
export function rgbBytes(frames: Float32Array, shape: FrameShape): Uint8Array {
  const per = shape[2] * shape[3] * 3;
  const out = new Uint8Array(shape[0] * per);
  for (let f = 0; f < shape[0]; f++) out.set(frameBytes(frames, shape, f), f * per);
  return out;
}

async function withFile<T>(bytes: Uint8Array, suffix: string, fn: (path: string) => Promise<T>): Promise<T> {
  const path = await Deno.makeTempFile({ prefix: "ditserve-video-", suffix });
  try {
    await Deno.writeFile(path, bytes);
    return await fn(path);
  } finally {
    await Deno.remove(path);
  }
}

async function run(command: string, args: string[]): Promise<Uint8Array> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return out.stdout;
}

export interface ProbedVideo {
  codec: string;
  pixFmt: string;
  width: number;
  height: number;
  /** Frames decoded (ffprobe -count_frames). */
  frames: number;
  /** r_frame_rate, e.g. "16/1". */
  frameRate: string;
  /** Container start and duration in seconds. */
  start: number;
  duration: number;
  /** Each frame's duration in seconds, in decode order. */
  frameDurations: number[];
}

/** ffprobe's account of the file's first video stream. */
export function probeVideo(bytes: Uint8Array, suffix: string): Promise<ProbedVideo> {
  return withFile(bytes, suffix, async (path) => {
    const json = JSON.parse(
      new TextDecoder().decode(
        await run("ffprobe", [
          ...["-v", "error", "-count_frames", "-select_streams", "v:0", "-of", "json"],
          "-show_entries",
          "stream=codec_name,pix_fmt,width,height,nb_read_frames,r_frame_rate:format=duration,start_time:frame=duration_time,pkt_duration_time",
          path,
        ]),
      ),
    );
    const stream = json.streams[0];
    return {
      codec: stream.codec_name,
      pixFmt: stream.pix_fmt,
      width: stream.width,
      height: stream.height,
      frames: Number(stream.nb_read_frames),
      frameRate: stream.r_frame_rate,
      start: Number(json.format.start_time),
      duration: Number(json.format.duration),
      // ffprobe 5 (Debian 12) names it pkt_duration_time, later ones duration_time.
      frameDurations: json.frames.map((f: Record<string, string>) =>
        Number(f.duration_time ?? f.pkt_duration_time)
      ),
    };
  });
}

/** The file decoded by ffmpeg to interleaved 8-bit RGB frames, one after another. */
export function decodeVideo(bytes: Uint8Array, suffix: string): Promise<Uint8Array> {
  return withFile(
    bytes,
    suffix,
    (path) => run("ffmpeg", ["-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]),
  );
}

/**
 * Interleaved RGB frames through 4:2:0 chroma and back (ffmpeg's own conversion, no codec): what an H.264
 * yuv420p file can hold at best, to compare a decoded MP4 with when the frames have fine colour detail.
 */
export async function yuv420pRoundTrip(rgb: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  const raw = (pixFmt: string) => ["-f", "rawvideo", "-pix_fmt", pixFmt, "-s", `${width}x${height}`];
  const convert = async (from: string, to: string, input: Uint8Array) => {
    const child = new Deno.Command("ffmpeg", {
      args: ["-v", "error", ...raw(from), "-i", "pipe:0", ...raw(to), "pipe:1"],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const output = child.output();
    const writer = child.stdin.getWriter();
    await writer.write(input);
    await writer.close();
    return (await output).stdout;
  };
  return await convert("yuv420p", "rgb24", await convert("rgb24", "yuv420p", rgb));
}

/** PSNR in dB between two 8-bit buffers of equal length; Infinity when equal. */
export function psnr(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new Error(`PSNR of ${a.length} and ${b.length} bytes`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  return sum === 0 ? Infinity : 10 * Math.log10((255 * 255 * a.length) / sum);
}

/** The frames of an animated WebP (its ANMF chunks): canvas size and each frame's duration in ms. */
export function webpFrames(bytes: Uint8Array): { width: number; height: number; durations: number[] } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  const u24 = (at: number) => bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16);
  if (tag(0) !== "RIFF" || tag(8) !== "WEBP") throw new Error("not a WebP file");
  if (view.getUint32(4, true) + 8 !== bytes.length) throw new Error("RIFF size does not match the file");
  let canvas = { width: 0, height: 0 };
  const durations: number[] = [];
  for (let at = 12; at < bytes.length;) {
    const size = view.getUint32(at + 4, true);
    if (tag(at) === "VP8X") canvas = { width: u24(at + 12) + 1, height: u24(at + 15) + 1 };
    if (tag(at) === "ANMF") durations.push(u24(at + 20));
    at += 8 + size + (size % 2);
  }
  return { ...canvas, durations };
}
