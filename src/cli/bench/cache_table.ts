// What `deno task bench` measures per configuration and image, and how the records become its table: speedup
// as the median over repeats with its spread, quality over the whole image set (one run: the images of later
// repeats are checked to be the same bits).
import { markdownTable } from "markdown-table";
import { psnrOfSquaredError } from "../../metrics/image_quality.ts";
import type { BenchConfig } from "./cache_configs.ts";
import { median } from "./harness.ts";

/** One configuration on one image. Quality fields come from the first repeat. */
export interface ImageRecord {
  /** Wall-clock seconds, one per repeat. */
  seconds: number[];
  /** FNV-1a of the image's bytes: every repeat must give the same image. */
  checksum: number;
  cachedSteps: number;
  blocksExecuted: number;
  blocksTotal: number;
  readbacks: number;
  memoryBytes: number;
  /** Whether the classifier read the asked class; null where no classifier judges the model. */
  correct: boolean | null;
  ssim: number;
  /** Sum of squared differences to the uncached image, over `values` values. */
  squaredError: number;
  values: number;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface Row {
  config: string;
  judgedOn: string;
  cache: Record<string, unknown>;
  /** Seconds over the images every repeat timed (all, unless later repeats timed fewer), median over repeats. */
  seconds: number;
  speedup: Spread;
  cachedSteps: number;
  blocksSaved: number;
  psnr: number;
  ssim: number;
  /** null where no classifier judges the model. */
  accuracy: number | null;
  readbacksPerImage: number;
  memoryBytes: number;
}

export function checksum(values: Float32Array): number {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

export function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** Seconds of repeat r over all images. */
const repeatSeconds = (records: readonly ImageRecord[], r: number) => sum(records.map((x) => x.seconds[r]));

export function summarise(
  config: BenchConfig,
  judgedOn: string,
  records: readonly ImageRecord[],
  baseline: readonly ImageRecord[],
): Row {
  // Later repeats may time only the first images: every repeat is compared over the images all of them timed.
  const repeats = Math.max(...records.map((x) => x.seconds.length));
  const timed = records.findIndex((x) => x.seconds.length < repeats);
  const [mine, theirs] = [records, baseline].map((set) => timed < 0 ? set : set.slice(0, timed));
  const perRepeat = Array.from({ length: repeats }, (_, r) => repeatSeconds(mine, r));
  const speedups = perRepeat.map((s, r) => repeatSeconds(theirs, r) / s);
  const images = records.length;
  return {
    config: config.name,
    judgedOn,
    cache: config.cache,
    seconds: spread(perRepeat).median,
    speedup: spread(speedups),
    cachedSteps: sum(records.map((x) => x.cachedSteps)) / images,
    blocksSaved: 1 - sum(records.map((x) => x.blocksExecuted)) / sum(records.map((x) => x.blocksTotal)),
    psnr: psnrOfSquaredError(sum(records.map((x) => x.squaredError)), sum(records.map((x) => x.values)), 2),
    ssim: sum(records.map((x) => x.ssim)) / images,
    accuracy: records[0].correct === null ? null : records.filter((x) => x.correct).length / images,
    readbacksPerImage: sum(records.map((x) => x.readbacks)) / images,
    memoryBytes: Math.max(...records.map((x) => x.memoryBytes)),
  };
}

const times = (v: number) => `${v.toFixed(2)}x`;

export function markdown(rows: readonly Row[], steps: number, repeats: number): string {
  const header = [
    "configuration",
    "judged on",
    "seconds",
    repeats > 1 ? `speedup, median of ${repeats} [min, max]` : "speedup",
    `cached steps / ${steps} (DBPrune: steps with a pruned block)`,
    "block executions saved",
    "PSNR dB",
    "SSIM",
    "accuracy",
    "readbacks / image",
    "cache memory",
  ];
  const body = rows.map((r) => [
    r.config,
    r.judgedOn,
    r.seconds.toFixed(2),
    repeats > 1
      ? `${times(r.speedup.median)} [${times(r.speedup.min)}, ${times(r.speedup.max)}]`
      : times(r.speedup.median),
    r.cachedSteps.toFixed(1),
    `${(100 * r.blocksSaved).toFixed(1)}%`,
    Number.isFinite(r.psnr) ? r.psnr.toFixed(1) : "inf",
    r.ssim.toFixed(3),
    r.accuracy === null ? "n/a" : `${(100 * r.accuracy).toFixed(0)}%`,
    r.readbacksPerImage.toFixed(1),
    `${(r.memoryBytes / 1024).toFixed(0)} KiB`,
  ]);
  return markdownTable([header, ...body], { align: ["l", "l", ...header.slice(2).map(() => "r" as const)] });
}
