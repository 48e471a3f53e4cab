// A scripted two-stream block list, FLUX's shape in miniature: block i adds its residual to the image stream
// and its own residual to a text stream of fewer tokens. Built from two fake lists, so every value a strategy
// stores or replays on either stream is known exactly. Unless a step scripts the text stream itself, it is
// textOf() of the image script. As FLUX's blocks do (the split of their joint attention output), each block
// reaches the text stream through a buffer copy: text + r goes to a scratch tensor, copied back.
import type { GpuContext } from "../../src/gpu/context.ts";
import { copyCommand } from "../../src/gpu/kernel.ts";
import { axpy } from "../../src/ops/axpy.ts";
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
  const stream = text.list.hidden;
  const scratch = ctx.pool.tensor(TEXT_SHAPE);
  const sums = text.residuals.map((r) => axpy(ctx, r, stream, { alpha: 1, out: scratch }));
  const back = copyCommand("text stream", scratch, stream);
  return {
    list: {
      blocks: image.list.blocks.map((b, i) => [...b, ...sums[i].dispatches, back]),
      hidden: image.list.hidden,
      modulatedInput: image.list.modulatedInput,
      streams: { image: image.list.hidden, text: stream },
    },
    residuals: image.residuals,
    text,
    script(hidden, residuals) {
      image.script(hidden, residuals);
      text.script(textOf(hidden), residuals.map(textOf));
    },
    release() {
      for (const op of sums) op.release();
      scratch.release();
      image.release();
      text.release();
    },
  };
}
