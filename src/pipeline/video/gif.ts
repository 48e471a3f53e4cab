// Animated GIF in plain TypeScript through gifenc (a maintained encoder: LZW and the palette quantizer are not
// ours to get wrong), so that one video format works where ffmpeg is missing. Each frame gets its own
// 256-colour palette; GIF times frames in centiseconds, so each delay is rounded from the frame's exact start
// time, which keeps the whole video at the requested frame rate.
// @ts-types="./gifenc.d.ts"
import gifenc from "gifenc";
import { eachFrame, type FrameShape } from "./frames.ts";

/** Centiseconds each frame shows: the differences of the rounded start times of frames 0..count. */
export function gifDelays(count: number, fps: number): number[] {
  const start = (frame: number) => Math.round((frame * 100) / fps);
  return Array.from({ length: count }, (_, f) => start(f + 1) - start(f));
}

export function encodeGif(frames: Float32Array, shape: FrameShape, fps: number): Uint8Array {
  const [count, , height, width] = shape;
  const delays = gifDelays(count, fps);
  const gif = gifenc.GIFEncoder();
  let f = 0;
  for (const rgba of eachFrame(frames, shape, { alpha: true })) {
    const palette = gifenc.quantize(rgba, 256);
    gif.writeFrame(gifenc.applyPalette(rgba, palette), width, height, { palette, delay: delays[f++] * 10 });
  }
  gif.finish();
  return gif.bytes();
}
