// How a whole-list strategy's batched forward is split into its images: row r
// of every stream belongs to image r % images (generate.ts stacks CFG's halves image by image). When the
// images of one forward decide apart, the blocks run for the whole batch and row copies keep each image's own
// state: the images that compute snapshot and store their rows, the ones that skip get their entry rows
// plus their residual back, and their stored input and residual stay those of their own last computed step.
import { type Command, copyCommand } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { StreamStore } from "./stored_stream.ts";

export class ImageRows {
  constructor(readonly rows: number, readonly images: number) {
    if (!Number.isInteger(rows / images)) {
      throw new Error(`a forward of ${rows} rows cannot hold ${images} images (rows must be a multiple)`);
    }
  }

  /** Pairs per measure: the whole batch's, then one per row. */
  get slotRows(): number {
    return 1 + this.rows;
  }

  #rowsOf(image: number): number[] {
    return Array.from({ length: this.rows / this.images }, (_, h) => h * this.images + image);
  }

  /** The images not listed. */
  others(images: readonly number[]): number[] {
    return Array.from({ length: this.images }, (_, i) => i).filter((i) => !images.includes(i));
  }

  /** Row copies of `images`: snapshot (stream -> input), store (fresh -> residual), replay (replayed -> stream). */
  copies(streams: readonly StreamStore[], kind: "snapshot" | "store" | "replay", images: readonly number[]) {
    return streams.flatMap((s) => {
      const [src, dst] = kind === "snapshot"
        ? [s.stream, s.input]
        : kind === "store"
        ? [s.fresh.out, s.residual]
        : [s.replayed.out, s.stream];
      return this.keepRows(dst, src, images);
    });
  }

  /** Copies the rows of `images` from `src` into `dst` (same shape). */
  keepRows(dst: Tensor, src: Tensor, images: readonly number[]): Command[] {
    const bytes = src.byteLength / this.rows;
    return images.flatMap((i) =>
      this.#rowsOf(i).map((row) =>
        copyCommand("image rows", src, dst, { srcOffset: row * bytes, dstOffset: row * bytes, bytes })
      )
    );
  }

  /** Per image, the mean of its rows' (mean|a - b|, mean|a|) pairs (rows are equal in size). */
  perImage(pairs: Float32Array): [number, number][] {
    return Array.from({ length: this.images }, (_, i) => {
      const rows = this.#rowsOf(i);
      const mean = (k: number) => rows.reduce((sum, r) => sum + pairs[2 * (1 + r) + k], 0) / rows.length;
      return [mean(0), mean(1)];
    });
  }
}
