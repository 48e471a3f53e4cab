// deno task generate --label 7 --out seven.png [--grid] [--model DIR] [--steps N] [--seed S] [--guidance G]
//   [--sampler NAME] [--shift 1] [--eta 0] [--cache ...] [--latents IN.safetensors] [--out-tensor OUT.safetensors]
// Runs any supported model directory (the embedded mnist-dit, or a diffusers pipeline such as DiTPipeline).
// Writes a PNG (and, with --out-tensor, the images as float32 [B, H, W, C] in [0, 1], diffusers'
// output_type="np"), prints JSON stats on stdout and a progress bar on stderr. Bad input: one line, exit
// code 2, no file written. No GPU adapter: one line, exit code 1.
// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import { parseArgs } from "node:util";
import { createStrategy } from "../cache/create.ts";
import { readFloat32Tensors, WeightsError } from "../model/safetensors.ts";
import { encodeSafetensors, writeFileAtomically } from "../model/safetensors_writer.ts";
import { encodeImagesPng, toUnitHwc } from "../pipeline/image.ts";
import { type ModelCard, readModelCard } from "../pipeline/model_card.ts";
import { LatentsError } from "../pipeline/pipelines/image_pipeline.ts";
import { loadPipeline } from "../pipeline/pipelines/load.ts";
import { type GenerationRequest, RequestError, resolveRequest, samplingSchema } from "../pipeline/request.ts";
import { formatIssues } from "../validation/issues.ts";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";

const USAGE =
  "usage: deno task generate (--label L | --class L | --grid) --out FILE.png [--model weights/mnist-dit] " +
  "[--steps N] [--seed 0] [--guidance G] [--sampler NAME] [--shift 1] [--eta 0] " +
  '[--cache fbcache|dbcache|\'{"strategy":"dbcache","Fn":1,...}\'] [--latents IN.safetensors] [--out-tensor OUT.safetensors]';

class UsageError extends Error {}

interface CliRequest {
  card: ModelCard;
  request: GenerationRequest;
  out: string;
  outTensor?: string;
  latents?: Float32Array;
}

const OPTIONS = {
  label: { type: "string" },
  class: { type: "string" },
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
  cache: { type: "string", default: "none" },
} as const;

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
  for (const key of ["steps", "seed", "guidance", "shift", "eta"]) {
    // Number("") is 0 and Number("1e400") is Infinity: both must be refused, so blanks become NaN.
    if (typeof v[key] === "string") numbers[key] = (v[key] as string).trim() === "" ? NaN : Number(v[key]);
  }
  if (typeof v.sampler === "string") numbers.sampler = v.sampler;
  const parsed = samplingSchema.safeParse(numbers);
  if (!parsed.success) throw new UsageError(formatIssues(parsed.error));
  return parsed.data;
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
  if (typeof v.out !== "string" || !v.out.endsWith(".png")) {
    throw new UsageError(`--out must name a .png file\n${USAGE}`);
  }
  if (v["out-tensor"] !== undefined && !v["out-tensor"].endsWith(".safetensors")) {
    throw new UsageError("--out-tensor must name a .safetensors file");
  }
  const label = v.label ?? v.class;
  if ((label === undefined) === !v.grid || (v.label !== undefined && v.class !== undefined)) {
    throw new UsageError(`give exactly one of --label (--class) or --grid\n${USAGE}`);
  }
  const card = await readModelCard(v.model);
  const labels = label === undefined ? card.classes.names.map((_, i) => i) : [label];
  const request = resolveRequest(card, {
    ...values,
    labels,
    cache: cacheInput(v.cache),
    labelField: "label",
  });
  const latents = v.latents === undefined ? undefined : await readLatents(v.latents);
  return { card, request, out: v.out, outTensor: v["out-tensor"], latents };
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
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const strategy = createStrategy(ctx, request.cache);
  try {
    const pipeline = await loadPipeline(ctx, card);
    const bar = new cliProgress.SingleBar({ clearOnComplete: true }, cliProgress.Presets.shades_classic);
    bar.start(request.steps, 0);
    const result = await pipeline.run(request, {
      strategy,
      latents: cli.latents,
      onStep: () => bar.increment(),
    });
    bar.stop();
    await writeFileAtomically(cli.out, encodeImagesPng(result.images, result.shape));
    if (cli.outTensor) {
      const [n, c, h, w] = result.shape;
      const images = { shape: [n, h, w, c], data: toUnitHwc(result.images, result.shape) };
      await writeFileAtomically(cli.outTensor, encodeSafetensors({ images }, { model: card.dir }));
    }
    console.log(JSON.stringify({
      out: cli.out,
      ...(cli.outTensor ? { outTensor: cli.outTensor } : {}),
      model: card.dir,
      images: request.labels.length,
      labels: request.labels.map((i) => card.classes.names[i]),
      steps: request.steps,
      seed: request.seed,
      guidance: request.guidance,
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
    if (!(e instanceof WeightsError || e instanceof LatentsError)) throw e;
    console.error(e.message);
    return 2;
  } finally {
    strategy.release();
    ctx.destroy();
  }
}

if (import.meta.main) Deno.exit(await run(Deno.args));
