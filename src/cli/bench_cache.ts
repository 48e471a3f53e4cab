// deno task bench [--model DIR] [--per-digit 1 | --images N] [--steps 28] [--guidance 3] [--repeat 1]
//   [--seeds held-out|tuning]
//   [--only "F1B0 (0.08),..."] [--checkpoint FILE] [--grid docs/cache-grid.png] [--json]
// Speed against quality for each cache configuration on the embedded model: the same labels and seeds per
// configuration, one image per request (as a server runs them), configurations interleaved per image in an
// order that rotates, and the whole set repeated --repeat times, so that load changes hit all of them alike; the speedup is the
// median over repeats with its spread. Quality (one figure over the set): PSNR and mean SSIM against the
// uncached image of the same seed, the classifier's accuracy on the asked digit. Images are judged on
// held-out seeds (1001, 1002, ...) unless --seeds tuning picks the seeds hand-tuned rows were chosen on
// (1, 2, ...). --checkpoint keeps the records after every image and resumes a run with the same settings.
// Also measured: what the GPU-decided path adds to a computed step, against the step itself.
import { parseArgs } from "node:util";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { BENCH_CONFIGS, type BenchConfig } from "./bench/cache_configs.ts";
import { checksum, type ImageRecord, markdown, summarise } from "./bench/cache_table.ts";
import { marginalMs, timeCommands } from "./bench/harness.ts";
import { createStrategy } from "../cache/create.ts";
import { resolveCacheOptions } from "../cache/options.ts";
import type { GpuContext } from "../gpu/context.ts";
import { type Command, isDispatch } from "../gpu/kernel.ts";
import { squaredError, ssim } from "../metrics/image_quality.ts";
import { DigitClassifier } from "../model/classifier.ts";
import type { GenerateResult } from "../pipeline/generate.ts";
import { encodeImagesPng } from "../pipeline/image.ts";
import { type ClassCard, latentShape, readModelCard } from "../pipeline/model_card.ts";
import type { ImagePipeline } from "../pipeline/pipelines/image_pipeline.ts";
import { loadPipeline } from "../pipeline/pipelines/load.ts";
import { resolveRequest } from "../pipeline/request.ts";
import { StepRecorder } from "../gpu/step_recorder.ts";

const SEED_SETS = { "held-out": 1001, tuning: 1 } as const;
type SeedSet = keyof typeof SEED_SETS;
/** Images per configuration kept for the grid. */
const GRID_COLUMNS = 20;

const DEFAULT_MODEL = "weights/mnist-dit";

interface Settings {
  model: string;
  perDigit: number;
  /** Images judged: 10 per digit, or --images. */
  images: number;
  steps: number;
  guidance: number;
  repeat: number;
  seeds: SeedSet;
  configs: string[];
}

interface Progress {
  settings: Settings;
  /** [config][image] */
  records: ImageRecord[][];
  /** [config][image < GRID_COLUMNS]: clamped images. */
  grid: number[][][];
  /** Repeats and images done: the next run starts at (repeat, image). */
  next: { repeat: number; image: number };
}

const clamp = (images: Float32Array) => images.map((v) => Math.min(1, Math.max(-1, v)));

async function runOne(
  ctx: GpuContext,
  pipeline: ImagePipeline,
  config: BenchConfig,
  input: { label: number; steps: number; seed: number; guidance: number },
): Promise<GenerateResult> {
  const { label, ...sampling } = input;
  const request = resolveRequest(pipeline.card, {
    ...sampling,
    labels: [label],
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

/** Collects what a strategy encodes instead of encoding it. */
class CommandLog extends StepRecorder {
  readonly commands: Command[] = [];

  override encode(commands: readonly Command[]): void {
    this.commands.push(...commands);
  }
}

/**
 * GPU milliseconds the GPU-decided path adds to a computed step (everything the strategy encodes besides
 * the blocks: F's input snapshot, R_F, the diff, the decision, the compute path's copies and stores, the
 * replay as a zero-size dispatch, and TaylorSeer's dispatches when on).
 */
async function decisionPath(
  ctx: GpuContext,
  pipeline: ImagePipeline,
  guided: boolean,
  extra: Record<string, unknown>,
) {
  const graph = pipeline.denoiser.graph(guided ? 2 : 1);
  const cache = {
    strategy: "dbcache",
    Fn: 1,
    Bn: 0,
    max_warmup_steps: 0,
    residual_diff_threshold: 0,
    ...extra,
  };
  const context = { blocks: pipeline.card.blocks, steps: 2, channels: pipeline.card.streamWidth };
  const strategy = createStrategy(ctx, resolveCacheOptions(cache, context));
  let log = new CommandLog(ctx.gpu);
  // Step 0 computes because nothing is stored; step 1 is decided by the kernel (threshold 0: compute).
  for (const step of [0, 1]) {
    log = new CommandLog(ctx.gpu);
    await strategy.forward({ step, steps: 2, deferReport: true }, graph, log);
  }
  const blockGroups = new Set(graph.blocks.flat().filter(isDispatch).map((d) => d.bindGroup));
  const added = log.commands.filter((c) => !isDispatch(c) || !blockGroups.has(c.bindGroup));
  const pathMs = await marginalMs(ctx, added);
  strategy.release();
  return { commands: added.length, pathMs };
}

function parse(args: string[]): { settings: Settings; json: boolean; grid: string; checkpoint?: string } {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string", default: DEFAULT_MODEL },
      "per-digit": { type: "string", default: "1" },
      images: { type: "string" },
      steps: { type: "string", default: "28" },
      guidance: { type: "string", default: "3" },
      repeat: { type: "string", default: "1" },
      seeds: { type: "string", default: "held-out" },
      only: { type: "string" },
      checkpoint: { type: "string" },
      grid: { type: "string", default: "docs/cache-grid.png" },
      json: { type: "boolean", default: false },
    },
  });
  const [perDigit, steps, guidance, repeat] = [
    values["per-digit"],
    values.steps,
    values.guidance,
    values.repeat,
  ]
    .map(Number);
  const images = values.images === undefined ? 10 * perDigit : Number(values.images);
  if (
    ![perDigit, steps, repeat, images].every((v) => Number.isInteger(v) && v > 0) ||
    !(guidance >= 0 && guidance <= 30)
  ) {
    throw new Error(
      "--per-digit, --images, --steps and --repeat must be positive integers, --guidance a number in 0..30",
    );
  }
  if (!(values.seeds! in SEED_SETS)) {
    throw new Error(`--seeds must be one of ${Object.keys(SEED_SETS).join(", ")}`);
  }
  const wanted = values.only?.split(",").map((s) => s.trim());
  const names = BENCH_CONFIGS.map((c) => c.name);
  const unknown = wanted?.filter((w) => !names.includes(w)) ?? [];
  if (unknown.length > 0) {
    throw new Error(
      `--only: unknown ${unknown.join(", ")}; valid configurations: ${names.slice(1).join(", ")}`,
    );
  }
  const configs = names.filter((n, i) => i === 0 || !wanted || wanted.includes(n));
  return {
    settings: {
      model: values.model!,
      perDigit,
      images,
      steps,
      guidance,
      repeat,
      seeds: values.seeds as SeedSet,
      configs,
    },
    json: values.json!,
    grid: values.grid!,
    checkpoint: values.checkpoint,
  };
}

/** Settings as compared for a resume; checkpoints written before --model and --images existed had neither. */
function settingsKey(s: Partial<Settings>): string {
  const { model = DEFAULT_MODEL, images = 10 * (s.perDigit ?? 1), ...rest } = s;
  return JSON.stringify({ ...rest, model, images, perDigit: undefined });
}

async function loadProgress(path: string | undefined, settings: Settings): Promise<Progress> {
  const fresh: Progress = {
    settings,
    records: settings.configs.map(() => []),
    grid: settings.configs.map(() => []),
    next: { repeat: 0, image: 0 },
  };
  if (!path) return fresh;
  try {
    const saved = JSON.parse(await Deno.readTextFile(path)) as Progress;
    if (settingsKey(saved.settings) !== settingsKey(settings)) {
      throw new Error(`${path} holds a run with other settings; remove it or give another --checkpoint`);
    }
    return saved;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return fresh;
    throw e;
  }
}

/** Temp file then rename: an interrupted run leaves the previous checkpoint whole. */
async function saveAtomically(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, text);
  await Deno.rename(`${path}.tmp`, path);
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

async function record(
  classifier: DigitClassifier | null,
  result: GenerateResult,
  label: number,
  baseline: Float32Array,
): Promise<ImageRecord> {
  const image = clamp(result.images);
  return {
    seconds: [result.seconds],
    checksum: checksum(result.images),
    cachedSteps: result.cache.cachedSteps.length,
    blocksExecuted: result.cache.blocksExecuted,
    blocksTotal: result.cache.blocksTotal,
    readbacks: result.readbacks,
    memoryBytes: result.cache.memoryBytes,
    correct: classifier ? (await classifier.classify(result.images)).predicted[0] === label : null,
    ssim: imageSsim(image, baseline, result.shape),
    squaredError: squaredError(image, baseline),
    values: image.length,
  };
}

async function main(): Promise<number> {
  let parsed, progress, card: ClassCard;
  try {
    parsed = parse(Deno.args);
    progress = await loadProgress(parsed.checkpoint, parsed.settings);
    const read = await readModelCard(parsed.settings.model);
    if (!read.classes) throw new Error(`--model: ${read.dir} is a text model; this benchmark draws classes`);
    card = read;
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  const { settings, json } = parsed;
  const configs = settings.configs.map((name) => BENCH_CONFIGS.find((c) => c.name === name)!);
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const pipeline = await loadPipeline(ctx, card);
  // The digit classifier judges the embedded digits model only.
  const classifier = card.pipeline === "MnistDiT" ? await DigitClassifier.load(ctx) : null;
  const { steps, guidance } = settings;
  const images = settings.images;
  const firstSeed = SEED_SETS[settings.seeds];
  const classes = Math.min(10, card.classes.names.length);
  // Compile every pipeline the configurations use before anything is timed.
  for (const config of configs) await runOne(ctx, pipeline, config, { label: 0, steps, seed: 0, guidance });
  for (let r = progress.next.repeat; r < settings.repeat; r++) {
    for (let i = r === progress.next.repeat ? progress.next.image : 0; i < images; i++) {
      const label = i % classes;
      const request = { label, steps, seed: firstSeed + i, guidance };
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
          progress.records[c][i] = await record(classifier, result, label, baseline);
          if (i < GRID_COLUMNS) progress.grid[c][i] = [...clamp(result.images)];
        } else if (known.checksum !== checksum(result.images)) {
          throw new Error(`${configs[c].name}, seed ${request.seed}: repeat ${r + 1} drew another image`);
        } else {
          known.seconds[r] = result.seconds;
        }
      }
      progress.next = i + 1 < images ? { repeat: r, image: i + 1 } : { repeat: r + 1, image: 0 };
      if (parsed.checkpoint) await saveAtomically(parsed.checkpoint, JSON.stringify(progress));
      if (!json) console.error(`repeat ${r + 1}/${settings.repeat}: ${i + 1}/${images} images`);
    }
  }
  const judged = (config: BenchConfig) => {
    const set = `${settings.seeds} seeds ${firstSeed}..${firstSeed + images - 1}`;
    return config.tuned ? `${set} (tuned on seeds 1..20)` : set;
  };
  const rows = configs.map((config, c) =>
    summarise(config, judged(config), progress.records[c], progress.records[0])
  );
  const adapter = `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`;
  const guided = pipeline.guided(guidance);
  const graph = pipeline.denoiser.graph(guided ? 2 : 1);
  const stepMs = await timeCommands(ctx, [...graph.prologue, ...graph.blocks.flat(), ...graph.epilogue]);
  const path = await decisionPath(ctx, pipeline, guided, {});
  const seerPath = await decisionPath(ctx, pipeline, guided, { enable_taylorseer: true, n_derivatives: 1 });
  if (json) {
    const common = {
      adapter,
      steps,
      guidance,
      images,
      repeats: settings.repeat,
      decisionPath: path,
      seerPath,
    };
    for (const r of rows) console.log(JSON.stringify({ ...r, ...common }));
  } else {
    console.log(
      `${card.dir}: ${images} images (classes 0-${
        classes - 1
      }, ${settings.seeds} seeds from ${firstSeed}), ` +
        `${steps} steps, guidance ` +
        `${guidance}, one image per request, ${settings.repeat} repeat(s) interleaved; ${adapter}\n`,
    );
    console.log(markdown(rows, steps, settings.repeat));
    const share = (p: { pathMs: number }) =>
      `${p.pathMs.toFixed(2)} ms = ${((100 * p.pathMs) / stepMs).toFixed(2)}%`;
    console.log(
      `\nGPU-decided path on a computed step, besides the blocks (${path.commands} commands: F input, R_F, ` +
        `diff, decision, compute-path copies and store, zero-size replay): ${
          share(path)
        } of an uncached step ` +
        `(${stepMs.toFixed(1)} ms); with TaylorSeer (${seerPath.commands} commands): ${share(seerPath)}.`,
    );
  }
  const shown = Math.min(images, GRID_COLUMNS);
  const grid = new Float32Array(progress.grid.flat(2));
  const [channels, height, width] = [
    latentShape(card, card.size)[0] === 1 ? 1 : 3,
    card.size.height,
    card.size.width,
  ];
  await Deno.writeFile(
    parsed.grid,
    encodeImagesPng(grid, [configs.length * shown, channels, height, width], shown),
  );
  classifier?.release();
  pipeline.release();
  ctx.destroy();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
