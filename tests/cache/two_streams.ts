// A scripted two-stream block list, FLUX's shape in miniature: block i adds its residual to the image stream
// and its own residual to a text stream of fewer tokens. Built from two fake lists, so every value a strategy
// stores or replays on either stream is known exactly. Unless a step scripts the text stream itself, it is
// textOf() of the image script.
import type { GpuContext } from "../../src/gpu/context.ts";
import { type FakeBlocks, fakeBlocks } from "../support/fake_blocks.ts";
import { SHAPE } from "./conformance.ts";

export const TEXT_SHAPE = [2, 3, 12];
export const TEXT_SIZE = 2 * 3 * 12;

export interface TwoStreamBlocks extends FakeBlocks {
  /** The text stream's own list: script it after script() to set the text values apart from the image's. */
  text: FakeBlocks;
}

/** The text values a step implies: the image values' first TEXT_SIZE, reversed (dyadic values stay dyadic). */
export function textOf(values: Float32Array): Float32Array {
  return values.slice(0, TEXT_SIZE).reverse();
}

export function twoStreamBlocks(ctx: GpuContext, count: number): TwoStreamBlocks {
  const image = fakeBlocks(ctx, count, SHAPE);
  const text = fakeBlocks(ctx, count, TEXT_SHAPE);
  return {
    list: {
      blocks: image.list.blocks.map((b, i) => [...b, ...text.list.blocks[i]]),
      hidden: image.list.hidden,
      streams: { image: image.list.hidden, text: text.list.hidden },
    },
    residuals: image.residuals,
    text,
    script(hidden, residuals) {
      image.script(hidden, residuals);
      text.script(textOf(hidden), residuals.map(textOf));
    },
    release() {
      image.release();
      text.release();
    },
  };
}
