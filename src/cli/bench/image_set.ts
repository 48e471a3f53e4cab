// One benchmark pass over an image set, shared by `deno task bench` and `deno task bench:pareto`: what each
// image asks for (a class, or a held-out phrasing of a digit), every configuration on every image in an order
// that rotates, quality scored against the first configuration (the uncached one) once all have run, and
// later repeats checked to draw the same bits while only their seconds are kept. Progress is resumable.
import { createStrategy } from "../../cache/create.ts";
import type { GpuContext } from "../../gpu/context.ts";
import { squaredError, ssim } from "../../metrics/image_quality.ts";
import { classifierInput, type DigitClassifier } from "../../model/classifier.ts";
import type { GenerateResult } from "../../pipeline/generate.ts";
import type { ModelCard } from "../../pipeline/model_card.ts";
import type { ImagePipeline } from "../../pipeline/pipelines/image_pipeline.ts";
import { type RequestInput, resolveRequest } from "../../pipeline/request.ts";
import type { BenchConfig } from "./cache_configs.ts";
import { checksum, type ImageRecord } from "./cache_table.ts";
import { heldOutPrompt, heldOutPrompts } from "./heldout_prompts.ts";

/** True CFG's negative prompt: the empty prompt mnist-flux dropped 10% of its training prompts to. */
export const NEGATIVE_PROMPT = "";

/** What image i asks for: a class, or a prompt (and the digit it names, where one is known). */
export interface Subject {
  label?: number;
  prompt?: string;
  /** The class or digit the classifier should read; null where none is known. */
  digit: number | null;
}

/** How the images of a run are conditioned, and how the header says it. */
export interface Subjects {
  of(image: number): Subject;
  describe: string;
  /** Whether the digit classifier judges the images. */
  judged: boolean;
}

export const clamp = (images: Float32Array) => images.map((v) => Math.min(1, Math.max(-1, v)));

export async function subjects(card: ModelCard): Promise<Subjects> {
  if (card.classes) {
    const classes = Math.min(10, card.classes.names.length);
    // The digit classifier judges the embedded digits model only.
    const judged = card.pipeline === "MnistDiT";
    return {
      of: (i) => ({ label: i % classes, digit: judged ? i % classes : null }),
      describe: `classes 0-${classes - 1}`,
      judged,
    };
  }
  const phrasings = await heldOutPrompts(card.dir);
  if (!phrasings) {
    // A text model with no digit prompts of its own: a plain prompt per digit, judged by nothing.
    return {
      of: (i) => ({ prompt: `a handwritten digit ${i % 10}`, digit: null }),
      describe: 'prompts "a handwritten digit 0-9"',
      judged: false,
    };
  }
  return {
    of: (i) => heldOutPrompt(phrasings, i),
    describe: `digits 0-9 asked by the held-out phrasings of prompts.json, ${
      phrasings.map((p) => p.length).reduce((a, b) => a + b, 0)
    } in all`,
    judged: true,
  };
}

export async function runOne(
  ctx: GpuContext,
  pipeline: ImagePipeline,
  config: BenchConfig,
  input: { subject: Subject; steps: number; seed: number; guidance: number; trueCfg: number },
): Promise<GenerateResult> {
  const { subject, trueCfg, ...sampling } = input;
  const conditioning: Partial<RequestInput> = subject.prompt !== undefined
    ? {
      prompts: [subject.prompt],
      ...(trueCfg > 1 ? { negativePrompt: NEGATIVE_PROMPT, true_cfg: trueCfg } : {}),
    }
    : { labels: [subject.label!] };
  const request = resolveRequest(pipeline.card, {
    ...sampling,
    ...conditioning,
    shift: 1,
    eta: 0,
    cache: config.cache,
  });
  const strategy = createStrategy(ctx, request.cache);
  try {
    return await pipeline.run(request, { strategy });
  } finally {
    strategy.release();
  }
}

/** Mean SSIM over the channel planes of one image [C, H, W]. */
function imageSsim(image: Float32Array, baseline: Float32Array, shape: GenerateResult["shape"]): number {
  const [, channels, height, width] = shape;
  const plane = height * width;
  let total = 0;
  for (let c = 0; c < channels; c++) {
    total += ssim(
      image.subarray(c * plane, (c + 1) * plane),
      baseline.subarray(c * plane, (c + 1) * plane),
      width,
      height,
      2,
    );
  }
  return total / channels;
}

export async function record(
  classifier: DigitClassifier | null,
  result: GenerateResult,
  digit: number | null,
  baseline: Float32Array,
): Promise<ImageRecord> {
  const image = clamp(result.images);
  const read = classifier && digit !== null
    ? (await classifier.classify(classifierInput(result.images, result.shape))).predicted[0]
    : null;
  return {
    seconds: [result.seconds],
    checksum: checksum(result.images),
    cachedSteps: result.cache.cachedSteps.length,
    blocksExecuted: result.cache.blocksExecuted,
    blocksTotal: result.cache.blocksTotal,
    readbacks: result.readbacks,
    memoryBytes: result.cache.memoryBytes,
    correct: read === null ? null : read === digit,
    ssim: imageSsim(image, baseline, result.shape),
    squaredError: squaredError(image, baseline),
    values: image.length,
  };
}

export interface ImageSetProgress {
  /** [config][image] */
  records: ImageRecord[][];
  /** [config][image < gridImages]: clamped images. */
  grid: number[][][];
  /** Repeats and images done: the next run starts at (repeat, image). */
  next: { repeat: number; image: number };
}

export interface ImageSetRun {
  images: number;
  firstSeed: number;
  repeat: number;
  /** Repeats after the first time only the first timedImages images (their quality is the first repeat's). */
  timedImages: number;
  subjects: Subjects;
  steps: number;
  guidance: number;
  trueCfg: number;
  /** Images per configuration kept for a grid. */
  gridImages: number;
  /** After every image, with where the next run starts. */
  saved(next: ImageSetProgress["next"]): Promise<void>;
}

/** Runs (or resumes) the pass; configs[0] is the baseline every image is scored against. */
export async function runImageSet(
  ctx: GpuContext,
  pipeline: ImagePipeline,
  classifier: DigitClassifier | null,
  configs: readonly BenchConfig[],
  progress: ImageSetProgress,
  run: ImageSetRun,
): Promise<void> {
  const { steps, guidance, trueCfg } = run;
  for (let r = progress.next.repeat; r < run.repeat; r++) {
    const images = r === 0 ? run.images : Math.min(run.timedImages, run.images);
    for (let i = r === progress.next.repeat ? progress.next.image : 0; i < images; i++) {
      const subject = run.subjects.of(i);
      const request = { subject, steps, seed: run.firstSeed + i, guidance, trueCfg };
      // The order rotates from image to image and repeat to repeat, so no configuration always runs first
      // (after the classifier's CPU work) or last; quality is scored once every configuration has run.
      const results: GenerateResult[] = [];
      for (let k = 0; k < configs.length; k++) {
        const c = (k + i + r) % configs.length;
        results[c] = await runOne(ctx, pipeline, configs[c], request);
      }
      const baseline = clamp(results[0].images);
      for (const [c, result] of results.entries()) {
        const known = progress.records[c][i];
        if (!known) {
          progress.records[c][i] = await record(classifier, result, subject.digit, baseline);
          if (i < run.gridImages) progress.grid[c][i] = [...clamp(result.images)];
        } else if (known.checksum !== checksum(result.images)) {
          throw new Error(`${configs[c].name}, seed ${request.seed}: repeat ${r + 1} drew another image`);
        } else {
          known.seconds[r] = result.seconds;
        }
      }
      progress.next = i + 1 < images ? { repeat: r, image: i + 1 } : { repeat: r + 1, image: 0 };
      await run.saved(progress.next);
    }
  }
}
