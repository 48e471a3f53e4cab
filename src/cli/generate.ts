// deno task generate --label 7 --out seven.png [--grid] [--model DIR] [--steps N] [--seed S] [--guidance G]
//   [--sampler NAME] [--shift 1] [--eta 0] [--cache ...] [--latents IN.safetensors] [--out-tensor OUT.safetensors]
// deno task generate --model FLUX_DIR (--prompt TEXT | --prompt-embeds IN.safetensors) [--height H --width W]
//   [--n N] [--negative-prompt TEXT --true-cfg S] ... --out image.png
// deno task generate --model WAN_DIR --prompt TEXT [--frames 81] [--fps 16] ... --out video.mp4 (or .gif, .webp)
// Runs any supported model directory (the embedded mnist-dit, or a diffusers pipeline: DiTPipeline,
// FluxPipeline, WanPipeline). Class models take --label, text models a prompt or diffusers' precomputed
// embeddings. Writes a PNG, or for a video model the video in the format --out's extension names (MP4 and WebP
// through ffmpeg, GIF without it) (and, with --out-tensor, the images as float32 [B, H, W, C] in [0, 1], diffusers'
// output_type="np"), prints JSON stats on stdout and a progress bar on stderr. Bad input: one line, exit
// code 2, no file written. No GPU adapter: one line, exit code 1.
// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import { parseArgs } from "node:util";
import { createStrategy } from "../cache/create.ts";
import { measureDecisionCosts } from "../cache/decision_path.ts";
import { type Float32Tensor, readFloat32Tensors, WeightsError } from "../model/safetensors.ts";
import { encodeSafetensors, writeFileAtomically } from "../model/safetensors_writer.ts";
import { encodeImagesPng, toUnitHwc } from "../pipeline/image.ts";
import { type ModelCard, readModelCard } from "../pipeline/model_card.ts";
import { EMBEDDING_NAMES, embeddingsRequest } from "../pipeline/pipelines/flux_conditioning.ts";
import { LatentsError } from "../pipeline/pipelines/image_pipeline.ts";
import {
  encodeVideo,
  VIDEO_FORMATS,
  type VideoFormat,
  videoFormatSupport,
} from "../pipeline/video/encode.ts";
import { loadPipeline } from "../pipeline/pipelines/load.ts";
import { type GenerationRequest, RequestError, resolveRequest, samplingSchema } from "../pipeline/request.ts";
import { MAX_IMAGES } from "../server/schemas.ts";
import { formatIssues } from "../validation/issues.ts";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";

const USAGE =
  "usage: deno task generate (--label L | --class L | --grid | --prompt TEXT | --prompt-embeds FILE) " +
  "--out FILE.png (video models: FILE.mp4, .gif or .webp) [--model weights/mnist-dit] [--height H --width W] " +
  "[--n N] [--frames F] [--fps R] [--negative-prompt TEXT] [--true-cfg S] " +
  "[--steps N] [--seed 0] [--guidance G] [--sampler NAME] [--shift 1] [--eta 0] " +
  '[--cache fbcache|dbcache|\'{"strategy":"dbcache","Fn":1,...}\'] [--latents IN.safetensors] [--out-tensor OUT.safetensors]';

class UsageError extends Error {}

interface CliRequest {
  card: ModelCard;
  request: GenerationRequest;
  out: string;
  /** What --out is written as: a PNG, or a video model's file. */
  format: "png" | VideoFormat;
  outTensor?: string;
  latents?: Float32Array;
  embeddings?: Record<string, Float32Tensor>;
}

const OPTIONS = {
  label: { type: "string" },
  class: { type: "string" },
  prompt: { type: "string" },
  "prompt-embeds": { type: "string" },
  "negative-prompt": { type: "string" },
  "true-cfg": { type: "string" },
  n: { type: "string" },
  height: { type: "string" },
  width: { type: "string" },
  grid: { type: "boolean", default: false },
  out: { type: "string" },
  "out-tensor": { type: "string" },
  latents: { type: "string" },
  model: { type: "string", default: "weights/mnist-dit" },
  steps: { type: "string" },
  seed: { type: "string" },
  guidance: { type: "string" },
  sampler: { type: "string" },
  shift: { type: "string" },
  eta: { type: "string" },
  frames: { type: "string" },
  fps: { type: "string" },
  cache: { type: "string", default: "none" },
} as const;

/** Numeric flags and their sampling fields. */
const FIELDS = [
  ["steps", "steps"],
  ["seed", "seed"],
  ["guidance", "guidance"],
  ["true-cfg", "true_cfg"],
  [
    "shift",
    "shift",
  ],
  ["eta", "eta"],
  ["frames", "frames"],
  ["fps", "fps"],
] as const;

/** `--cache fbcache` or a JSON object of cache options (cache-strategies.md names). */
function cacheInput(value: string): unknown {
  if (!value.trim().startsWith("{")) return value;
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new UsageError(`cache: not a JSON object (${(e as Error).message})`);
  }
}

function sampling(v: Record<string, string | boolean | undefined>) {
  const numbers: Record<string, number | string> = {};
  for (const [flag, key] of FIELDS) {
    // Number("") is 0 and Number("1e400") is Infinity: both must be refused, so blanks become NaN.
    if (typeof v[flag] === "string") numbers[key] = (v[flag] as string).trim() === "" ? NaN : Number(v[flag]);
  }
  if (typeof v.sampler === "string") numbers.sampler = v.sampler;
  const parsed = samplingSchema.safeParse(numbers);
  if (!parsed.success) throw new UsageError(formatIssues(parsed.error));
  return parsed.data;
}

type Flags = Record<string, string | boolean | undefined>;

/** --n as an image count: 1 unless given. */
function imageCount(v: Flags): number {
  if (v.n === undefined) return 1;
  const n = Number(v.n);
  if (!Number.isInteger(n) || n < 1 || n > MAX_IMAGES) {
    throw new UsageError(`n: must be an integer in 1..${MAX_IMAGES}`);
  }
  return n;
}

/** The request's classes, prompts or embeddings, from exactly one of the flags that give them. */
function conditioning(v: Flags, card: ModelCard, embeddings: Record<string, Float32Tensor> | undefined) {
  const given = ["label", "class", "grid", "prompt", "prompt-embeds"].filter((f) =>
    v[f] !== undefined && v[f] !== false
  );
  if (given.length !== 1) {
    throw new UsageError(
      `give exactly one of --label (--class), --grid, --prompt or --prompt-embeds\n${USAGE}`,
    );
  }
  const n = imageCount(v);
  const negativePrompt = v["negative-prompt"] as string | undefined;
  if (typeof v.prompt === "string") {
    return { prompts: new Array(n).fill(v.prompt), negativePrompt, labelField: "prompt" };
  }
  if (embeddings) {
    return { embeddings: embeddingsRequest(embeddings, n), negativePrompt, labelField: "prompt_embeds" };
  }
  const label = (v.label ?? v.class) as string | undefined;
  const labels = label === undefined ? card.classes?.names.map((_, i) => i) ?? [] : new Array(n).fill(label);
  return { labels, negativePrompt, labelField: "label" };
}

/** --height and --width as the request's "WxH" (both or neither). */
function size(height: string | undefined, width: string | undefined): string | undefined {
  if ((height === undefined) !== (width === undefined)) {
    throw new UsageError("size: give both --height and --width");
  }
  return height === undefined ? undefined : `${width}x${height}`;
}

/** The embeddings FluxPipeline takes, by their names in the file; other tensors (latents) are left alone. */
async function readEmbeddings(path: string): Promise<Record<string, Float32Tensor>> {
  const tensors = await readFloat32Tensors(path);
  const found = EMBEDDING_NAMES.filter((name) => tensors.has(name));
  if (!found.includes("prompt_embeds")) {
    throw new UsageError(
      `prompt_embeds: ${path} holds no tensor named prompt_embeds (it holds ${
        [...tensors.keys()].join(", ")
      })`,
    );
  }
  return Object.fromEntries(found.map((name) => [name, tensors.get(name)!]));
}

/** The one tensor of the file (or the one named "latents"). */
async function readLatents(path: string): Promise<Float32Array> {
  const tensors = await readFloat32Tensors(path);
  const tensor = tensors.get("latents") ?? (tensors.size === 1 ? [...tensors.values()][0] : undefined);
  if (!tensor) throw new UsageError(`latents: ${path} must hold one tensor, or one named "latents"`);
  return tensor.data;
}

async function parseCli(args: string[]): Promise<CliRequest> {
  let v;
  try {
    v = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n${USAGE}`);
  }
  const values = sampling(v);
  if (typeof v.out !== "string") throw new UsageError(`give --out FILE\n${USAGE}`);
  if (v["out-tensor"] !== undefined && !v["out-tensor"].endsWith(".safetensors")) {
    throw new UsageError("--out-tensor must name a .safetensors file");
  }
  const card = await readModelCard(v.model);
  const format = outputFormat(card, v.out);
  const embeddings = v["prompt-embeds"] === undefined ? undefined : await readEmbeddings(v["prompt-embeds"]);
  const request = resolveRequest(card, {
    ...values,
    ...conditioning(v, card, embeddings),
    size: size(v.height, v.width),
    cache: cacheInput(v.cache),
  });
  const latents = v.latents === undefined ? undefined : await readLatents(v.latents);
  return { card, request, out: v.out, format, outTensor: v["out-tensor"], latents, embeddings };
}

/** A PNG for an image model; for a video model, the video format --out's extension names. */
function outputFormat(card: ModelCard, out: string): CliRequest["format"] {
  const extension = out.slice(out.lastIndexOf(".") + 1).toLowerCase();
  if (!card.video) {
    if (extension === "png") return "png";
    throw new UsageError(`--out must name a .png file: ${card.pipeline} draws images\n${USAGE}`);
  }
  const format = VIDEO_FORMATS.find((f) => f === extension);
  if (format) return format;
  throw new UsageError(
    `--out must name a ${VIDEO_FORMATS.map((f) => `.${f}`).join(", ")} file: ${card.pipeline} draws videos`,
  );
}

/** The file --out names: the images as one PNG, or the frames as the video. */
async function encodeOut(cli: CliRequest, images: Float32Array, shape: [number, number, number, number]) {
  if (cli.format === "png") return encodeImagesPng(images, shape);
  return await encodeVideo(images, shape, { format: cli.format, fps: cli.request.video!.fps });
}

async function run(args: string[]): Promise<number> {
  let cli: CliRequest;
  try {
    cli = await parseCli(args);
  } catch (e) {
    if (e instanceof UsageError || e instanceof WeightsError || e instanceof RequestError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  const { card, request } = cli;
  // Minutes of denoising must not end in a file that cannot be written: ffmpeg is checked first.
  const unwritable = cli.format === "png" ? null : (await videoFormatSupport())[cli.format];
  if (unwritable) {
    console.error(unwritable);
    return 1;
  }
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  // The strategy takes the cheaper decision path on this adapter; the progress bar never changes it.
  await measureDecisionCosts(ctx);
  const strategy = createStrategy(ctx, request.cache);
  try {
    const pipeline = await loadPipeline(ctx, card);
    const bar = new cliProgress.SingleBar({ clearOnComplete: true }, cliProgress.Presets.shades_classic);
    bar.start(request.steps, 0);
    const result = await pipeline.run(request, {
      strategy,
      latents: cli.latents,
      embeddings: cli.embeddings,
      onStep: () => bar.increment(),
    });
    bar.stop();
    await writeFileAtomically(cli.out, await encodeOut(cli, result.images, result.shape));
    if (cli.outTensor) {
      const [n, c, h, w] = result.shape;
      const images = { shape: [n, h, w, c], data: toUnitHwc(result.images, result.shape) };
      await writeFileAtomically(cli.outTensor, encodeSafetensors({ images }, { model: card.dir }));
    }
    console.log(JSON.stringify({
      out: cli.out,
      ...(cli.outTensor ? { outTensor: cli.outTensor } : {}),
      model: card.dir,
      images: request.images,
      ...(request.video ? { frames: request.video.frames, fps: request.video.fps, format: cli.format } : {}),
      ...(card.classes ? { labels: request.labels.map((i) => card.classes!.names[i]) } : {}),
      ...(request.prompts ? { prompts: request.prompts } : {}),
      size: `${request.size.width}x${request.size.height}`,
      notes: result.notes,
      steps: request.steps,
      seed: request.seed,
      guidance: request.guidance,
      ...(request.trueCfg ? { trueCfg: request.true_cfg, negativePrompt: request.negativePrompt } : {}),
      sampler: request.sampler,
      seconds: Number(result.seconds.toFixed(3)),
      secondsPerStep: Number((result.seconds / request.steps).toFixed(4)),
      readbacks: result.readbacks,
      cache: result.cache,
      adapter: ctx.gpu.info.adapter,
    }));
    pipeline.release();
    return 0;
  } catch (e) {
    if (!(e instanceof WeightsError || e instanceof LatentsError || e instanceof RequestError)) throw e;
    console.error(e.message);
    return 2;
  } finally {
    strategy.release();
    ctx.destroy();
  }
}

if (import.meta.main) Deno.exit(await run(Deno.args));
