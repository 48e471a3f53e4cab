// A video pipeline's frames ([frames, 3, H, W] in [-1, 1], planar, as GenerateResult.images holds them) as the
// interleaved 8-bit pixels encoders take, one frame at a time so that a long video is never copied whole.
import { toByte } from "../image.ts";

/** [frames, channels, height, width]; channels must be 3 (RGB). */
export type FrameShape = readonly [number, number, number, number];

export interface FrameSize {
  width: number;
  height: number;
}

/** Throws unless the frames are RGB and hold as many values as their shape says. */
export function checkFrames(frames: Float32Array, shape: FrameShape): void {
  const [count, channels, height, width] = shape;
  if (channels !== 3) throw new Error(`video frames must be RGB (3 channels), they have ${channels}`);
  if (count < 1 || frames.length !== count * channels * height * width) {
    throw new Error(`video frames hold ${frames.length} values, not [${shape.join(", ")}]`);
  }
}

/**
 * Frame `index` as interleaved RGB (`alpha`: RGBA, opaque) at `size`, which may exceed the frame's own (H.264's
 * 4:2:0 needs even sides): the padding repeats the last column and row, so that no black edge is encoded.
 */
export function frameBytes(
  frames: Float32Array,
  shape: FrameShape,
  index: number,
  options: { alpha?: boolean; size?: FrameSize } = {},
): Uint8Array {
  const [, channels, height, width] = shape;
  const { width: outWidth, height: outHeight } = options.size ?? { width, height };
  const stride = options.alpha ? 4 : 3;
  const plane = height * width;
  const base = index * channels * plane;
  const out = new Uint8Array(outWidth * outHeight * stride);
  for (let y = 0; y < outHeight; y++) {
    const row = Math.min(y, height - 1) * width;
    for (let x = 0; x < outWidth; x++) {
      const source = base + row + Math.min(x, width - 1);
      const pixel = (y * outWidth + x) * stride;
      for (let c = 0; c < 3; c++) out[pixel + c] = toByte(frames[source + c * plane]);
      if (options.alpha) out[pixel + 3] = 255;
    }
  }
  return out;
}

/** Every frame in order (see frameBytes). */
export function* eachFrame(
  frames: Float32Array,
  shape: FrameShape,
  options: { alpha?: boolean; size?: FrameSize } = {},
): Generator<Uint8Array> {
  for (let f = 0; f < shape[0]; f++) yield frameBytes(frames, shape, f, options);
}
