// The part of gifenc's API (npm:gifenc@1, which ships no types) that gif.ts calls.
type Palette = number[][];

interface FrameOptions {
  palette?: Palette;
  /** Milliseconds; gifenc stores it rounded to centiseconds. */
  delay?: number;
  /** 0: loop forever (the default), -1: play once. */
  repeat?: number;
}

interface Encoder {
  writeFrame(index: Uint8Array, width: number, height: number, options?: FrameOptions): void;
  finish(): void;
  bytes(): Uint8Array;
}

declare const gifenc: {
  GIFEncoder(): Encoder;
  quantize(
    rgba: Uint8Array,
    maxColors: number,
    options?: { format?: "rgb565" | "rgb444" | "rgba4444" },
  ): Palette;
  applyPalette(rgba: Uint8Array, palette: Palette, format?: "rgb565" | "rgb444" | "rgba4444"): Uint8Array;
};

export default gifenc;
