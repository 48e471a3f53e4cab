// What the server tests share: a test wrapper for tests that hold the GPU worker across tests, JSON posts,
// Server-Sent Events parsing, and reading returned PNGs with the digit classifier.
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { classifierInput, DigitClassifier } from "../../../src/model/classifier.ts";
import { gpuContext } from "../../support/gpu.ts";

/** One GPU worker serves every test of a file (starting one costs seconds), so sanitizers cannot pair it. */
export function serverTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, sanitizeResources: false, sanitizeOps: false, fn });
}

export function jsonPost(body: unknown, headers: Record<string, string> = {}): RequestInit {
  return {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  };
}

export interface SseEvent {
  event: string;
  data: unknown;
}

export function parseSse(text: string): SseEvent[] {
  return text.split("\n\n").filter((block) => block.trim() !== "").map((block) => {
    const fields = Object.fromEntries(
      block.split("\n").map((line) => {
        const colon = line.indexOf(":");
        return [line.slice(0, colon), line.slice(colon + 1).trim()];
      }),
    );
    return { event: fields.event, data: JSON.parse(fields.data) };
  });
}

/**
 * A PNG of `count` equal digits side by side (gray 28x28 from mnist-dit, RGB 32x32 from mnist-flux) -> the
 * classifier's [count, 1, 28, 28] in [-1, 1].
 */
export function pngDigits(png: Uint8Array, count: number): Float32Array {
  const image = decode(png);
  const { channels, height } = image;
  assert.equal(image.width % count, 0, `${image.width} px wide is not ${count} images`);
  const width = image.width / count;
  const out = new Float32Array(count * channels * height * width);
  for (let n = 0; n < count; n++) {
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const pixel = (y * image.width + n * width + x) * channels + c;
          out[((n * channels + c) * height + y) * width + x] = image.data[pixel] / 127.5 - 1;
        }
      }
    }
  }
  return classifierInput(out, [count, channels, height, width]);
}

let classifier: Promise<DigitClassifier> | undefined;

/** Digits the classifier reads in a PNG of `count` side-by-side images. */
export async function readDigits(png: Uint8Array, count = 1): Promise<number[]> {
  classifier ??= gpuContext().then((ctx) => DigitClassifier.load(ctx));
  return (await (await classifier).classify(pngDigits(png, count))).predicted;
}

export const fromBase64 = (b64: string) => Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
