// deno task bench [--model DIR] [--per-digit 1 | --images N] [--steps N] [--guidance G | --true-cfg S]
//   [--repeat 1] [--seeds held-out|tuning]
//   [--only "F1B0 (0.08),..."] [--checkpoint FILE] [--grid docs/cache-grid.png] [--json]
// Speed against quality for each cache configuration on a model: the same conditioning and seeds per
// configuration, one image per request (as a server runs them), configurations interleaved per image in an
// order that rotates, and the whole set repeated --repeat times, so that load changes hit all of them alike; the speedup is the
// median over repeats with its spread. Quality (one figure over the set): PSNR and mean SSIM against the
// uncached image of the same seed and conditioning, the classifier's accuracy on the asked digit. Images are
// judged on held-out seeds (1001, 1002, ...) unless --seeds tuning picks the seeds hand-tuned rows were
// chosen on (1, 2, ...). --checkpoint keeps the records after every image and resumes a run with the same
// settings. Also measured: what the GPU-decided path adds to a computed step, against the step itself.
// Class models draw class i % 10 for image i (28 steps and guidance 3 unless told). Text models draw digit
// i % 10 from the held-out phrasings of the directory's prompts.json (cycling through that digit's
// phrasings), at the model's default steps; their --guidance is FLUX's guidance embedding (dev only), and
// --true-cfg S runs true CFG against the negative prompt "" (off by default). The configuration set follows
// the model (src/cli/bench/cache_configs.ts): two-stream FLUX rows scaled to its block list, or the
// one-stream rows.
import { parseArgs } from "node:util";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { type BenchConfig, benchConfigs } from "./bench/cache_configs.ts";
import { type ImageRecord, markdown, summarise } from "./bench/cache_table.ts";
import { runImageSet, runOne, type Subjects, subjects } from "./bench/image_set.ts";
import { marginalMs, timeCommands } from "./bench/harness.ts";
import { createStrategy } from "../cache/create.ts";
import { resolveCacheOptions } from "../cache/options.ts";
import type { GpuContext } from "../gpu/context.ts";
import { type Command, isDispatch } from "../gpu/kernel.ts";
import { DigitClassifier } from "../model/classifier.ts";
import { encodeImagesPng } from "../pipeline/image.ts";
import { type ModelCard, readModelCard } from "../pipeline/model_card.ts";
import type { ImagePipeline } from "../pipeline/pipelines/image_pipeline.ts";
import { loadPipeline } from "../pipeline/pipelines/load.ts";
import { StepRecorder } from "../gpu/step_recorder.ts";

const SEED_SETS = { "held-out": 1001, tuning: 1 } as const;
type SeedSet = keyof typeof SEED_SETS;
/** Images per configuration kept for the grid. */
const GRID_COLUMNS = 20;

const DEFAULT_MODEL = "weights/mnist-dit";
/** Class models' defaults (the embedded model's table); text models take their card's steps. */
const CLASS_DEFAULTS = { steps: 28, guidance: 3 };

interface Settings {
  model: string;
  perDigit: number;
  /** Images judged: 10 per digit, or --images. */
  images: number;
  steps: number;
  guidance: number;
  /** Text models: true CFG scale against NEGATIVE_PROMPT (1: off). Absent in checkpoints before it existed. */
  trueCfg?: number;
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

/** Collects what a strategy encodes instead of encoding it. */
class CommandLog extends StepRecorder {
  readonly commands: Command[] = [];

  override encode(commands: readonly Command[]): void {
    this.commands.push(...commands);
  }
}

/**
 * GPU milliseconds the GPU-decided path adds to a computed step (everything the strategy encodes besides
 * the blocks: F's input snapshot, R_F, the diff, the decision, the compute path's copies and stores of
 * every stream, the replay as a zero-size dispatch, and TaylorSeer's dispatches when on).
 */
async function decisionPath(
  ctx: GpuContext,
  pipeline: ImagePipeline,
  batch: number,
  extra: Record<string, unknown>,
) {
  const graph = pipeline.denoiser.graph(batch);
  const cache = {
    strategy: "dbcache",
    Fn: 1,
    Bn: 0,
    max_warmup_steps: 0,
    residual_diff_threshold: 0,
    ...extra,
  };
  const context = { blocks: pipeline.card.blocks, steps: 2, channels: pipeline.card.streamWidth };
  const strategy = createStrategy(ctx, resolveCacheOptions(cache, context), "gpu");
  try {
    let log = new CommandLog(ctx.gpu);
    // Step 0 computes because nothing is stored; step 1 is decided by the kernel (threshold 0: compute).
    for (const step of [0, 1]) {
      log = new CommandLog(ctx.gpu);
      await strategy.forward({ step, steps: 2 }, graph, log);
    }
    const blockGroups = new Set(graph.blocks.flat().filter(isDispatch).map((d) => d.bindGroup));
    const added = log.commands.filter((c) => !isDispatch(c) || !blockGroups.has(c.bindGroup));
    const pathMs = await marginalMs(ctx, added);
    return { commands: added.length, pathMs };
  } finally {
    strategy.release();
  }
}

interface Parsed {
  values: Record<string, string | boolean | undefined>;
  json: boolean;
  grid: string;
  checkpoint?: string;
}

function parse(args: string[]): Parsed {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string", default: DEFAULT_MODEL },
      "per-digit": { type: "string", default: "1" },
      images: { type: "string" },
      steps: { type: "string" },
      guidance: { type: "string" },
      "true-cfg": { type: "string" },
      repeat: { type: "string", default: "1" },
      seeds: { type: "string", default: "held-out" },
      only: { type: "string" },
      checkpoint: { type: "string" },
      grid: { type: "string", default: "docs/cache-grid.png" },
      json: { type: "boolean", default: false },
    },
  });
  return { values, json: values.json!, grid: values.grid!, checkpoint: values.checkpoint };
}

/** The settings of a run on `card`: flags, else the model's defaults; the configuration set is the model's. */
function resolveSettings(values: Parsed["values"], card: ModelCard): Settings {
  const text = card.pipeline === "FluxPipeline";
  const defaults = text ? card.defaults : CLASS_DEFAULTS;
  const number = (name: string, fallback: number) =>
    values[name] === undefined ? fallback : Number(values[name]);
  const [perDigit, steps, guidance, trueCfg, repeat] = [
    number("per-digit", 1),
    number("steps", defaults.steps),
    number("guidance", defaults.guidance),
    number("true-cfg", 1),
    number("repeat", 1),
  ];
  const images = number("images", 10 * perDigit);
  if (
    ![perDigit, steps, repeat, images].every((v) => Number.isInteger(v) && v > 0) ||
    !(guidance >= 0 && guidance <= 30) || !(trueCfg >= 1 && trueCfg <= 30)
  ) {
    throw new Error(
      "--per-digit, --images, --steps and --repeat must be positive integers, --guidance a number in 0..30, " +
        "--true-cfg a number in 1..30",
    );
  }
  if (!text && values["true-cfg"] !== undefined) {
    throw new Error(`--true-cfg: ${card.dir} is a class model; --guidance sets its classifier-free guidance`);
  }
  if (text && !card.transformer.guidance_embeds && values.guidance !== undefined) {
    throw new Error(
      `--guidance: ${card.dir} has no guidance embedding (guidance_embeds false); ` +
        `--true-cfg S runs true CFG against the negative prompt ""`,
    );
  }
  if (text && card.text.encoders === null) {
    throw new Error(
      `--model: ${card.dir} takes precomputed prompt embeddings only; this benchmark sends prompts`,
    );
  }
  if (!((values.seeds as string) in SEED_SETS)) {
    throw new Error(`--seeds must be one of ${Object.keys(SEED_SETS).join(", ")}`);
  }
  const names = benchConfigs(card, steps).map((c) => c.name);
  const wanted = (values.only as string | undefined)?.split(",").map((s) => s.trim());
  const unknown = wanted?.filter((w) => !names.includes(w)) ?? [];
  if (unknown.length > 0) {
    throw new Error(
      `--only: unknown ${unknown.join(", ")}; valid configurations for ${card.dir} at ${steps} steps: ${
        names.slice(1).join(", ")
      }`,
    );
  }
  const configs = names.filter((n, i) => i === 0 || !wanted || wanted.includes(n));
  return {
    model: values.model as string,
    perDigit,
    images,
    steps,
    guidance,
    ...(text ? { trueCfg } : {}),
    repeat,
    seeds: values.seeds as SeedSet,
    configs,
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

/** What the header says about guidance. */
function guidanceText(card: ModelCard, settings: Settings): string {
  if (card.pipeline !== "FluxPipeline") return `guidance ${settings.guidance}`;
  const cfg = (settings.trueCfg ?? 1) > 1
    ? `true CFG ${settings.trueCfg} against the negative prompt "" (two rows per step, one decision)`
    : "no CFG";
  return card.transformer.guidance_embeds ? `guidance embedding ${settings.guidance}, ${cfg}` : cfg;
}

async function main(): Promise<number> {
  let parsed, progress, card: ModelCard, settings: Settings, subjectsOf: Subjects;
  try {
    parsed = parse(Deno.args);
    card = await readModelCard(parsed.values.model as string);
    settings = resolveSettings(parsed.values, card);
    subjectsOf = await subjects(card);
    progress = await loadProgress(parsed.checkpoint, settings);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  const { json } = parsed;
  const set = benchConfigs(card, settings.steps);
  const configs = settings.configs.map((name) => set.find((c) => c.name === name)!);
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const pipeline = await loadPipeline(ctx, card);
  const classifier = subjectsOf.judged ? await DigitClassifier.load(ctx) : null;
  const { steps, guidance } = settings;
  const trueCfg = settings.trueCfg ?? 1;
  const images = settings.images;
  const firstSeed = SEED_SETS[settings.seeds];
  // Compile every pipeline the configurations use (and load a text model's encoders) before anything is
  // timed; a run's seconds start after its prompt is encoded.
  for (const config of configs) {
    await runOne(ctx, pipeline, config, { subject: subjectsOf.of(0), steps, seed: 0, guidance, trueCfg });
  }
  await runImageSet(ctx, pipeline, classifier, configs, progress, {
    images,
    firstSeed,
    repeat: settings.repeat,
    timedImages: images,
    subjects: subjectsOf,
    steps,
    guidance,
    trueCfg,
    gridImages: GRID_COLUMNS,
    async saved(next) {
      if (parsed.checkpoint) await saveAtomically(parsed.checkpoint, JSON.stringify(progress));
      if (!json) {
        console.error(`repeat ${next.repeat + 1}/${settings.repeat}: ${next.image}/${images} images`);
      }
    },
  });
  const judged = (config: BenchConfig) => {
    const seeds = `${settings.seeds} seeds ${firstSeed}..${firstSeed + images - 1}`;
    return config.tuned ? `${seeds} (tuned on seeds 1..20)` : seeds;
  };
  const rows = configs.map((config, c) =>
    summarise(config, judged(config), progress.records[c], progress.records[0])
  );
  const adapter = `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`;
  // Rows per forward: CFG's unconditional half (class models) or true CFG's negative prompt (FLUX).
  const batch = card.pipeline === "FluxPipeline"
    ? (trueCfg > 1 ? 2 : 1)
    : (pipeline.guided(guidance) ? 2 : 1);
  const graph = pipeline.denoiser.graph(batch);
  const stepMs = await timeCommands(ctx, [...graph.prologue, ...graph.blocks.flat(), ...graph.epilogue]);
  const taylorSeer = { enable_taylorseer: true, n_derivatives: 1 };
  const path = await decisionPath(ctx, pipeline, batch, {});
  const seerPath = await decisionPath(ctx, pipeline, batch, taylorSeer);
  // Two streams: the text stream's TaylorSeer adds its own update and extrapolation.
  const encoderPath = card.pipeline === "FluxPipeline"
    ? await decisionPath(ctx, pipeline, batch, { ...taylorSeer, enable_encoder_taylorseer: true })
    : null;
  if (json) {
    const common = {
      adapter,
      steps,
      guidance,
      ...(card.pipeline === "FluxPipeline" ? { trueCfg, encoderSeerPath: encoderPath } : {}),
      conditioning: subjectsOf.describe,
      images,
      repeats: settings.repeat,
      decisionPath: path,
      seerPath,
    };
    for (const r of rows) console.log(JSON.stringify({ ...r, ...common }));
  } else {
    console.log(
      `${card.dir} (${card.pipeline}, ${card.blocks} blocks): ${images} images (${subjectsOf.describe}, ` +
        `${settings.seeds} seeds from ${firstSeed}), ${steps} steps, ${guidanceText(card, settings)}, ` +
        `one image per request, ${settings.repeat} repeat(s) interleaved; ${adapter}\n`,
    );
    console.log(markdown(rows, steps, settings.repeat));
    const share = (p: { pathMs: number }) =>
      `${p.pathMs.toFixed(2)} ms = ${((100 * p.pathMs) / stepMs).toFixed(2)}%`;
    const encoder = encoderPath
      ? `; with the encoder TaylorSeer too (${encoderPath.commands} commands): ${share(encoderPath)}`
      : "";
    console.log(
      `\nGPU-decided path on a computed step, besides the blocks (${path.commands} commands: F input, R_F, ` +
        `diff, decision, compute-path copies and store, zero-size replay): ${
          share(path)
        } of an uncached step ` +
        `(${stepMs.toFixed(1)} ms); with TaylorSeer (${seerPath.commands} commands): ${
          share(seerPath)
        }${encoder}.`,
    );
  }
  const shown = Math.min(images, GRID_COLUMNS);
  const grid = new Float32Array(progress.grid.flat(2));
  const [height, width] = [card.size.height, card.size.width];
  const channels = progress.grid[0][0].length / (height * width);
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
