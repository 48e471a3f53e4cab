// deno task generate --label 7 --steps 28 --seed 1 --guidance 1.5 --out seven.png [--grid] [--model DIR]
// Writes a PNG, prints JSON stats on stdout and a progress bar on stderr. Bad input: one line, exit code 2,
// no file written. No GPU adapter: one line, exit code 1.
// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import { parseArgs } from "node:util";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { readConfig } from "../model/mnist_dit/config.ts";
import { Dit } from "../model/mnist_dit/transformer.ts";
import { WeightsError } from "../model/safetensors.ts";
import { createStrategy } from "../cache/create.ts";
import {
  type CacheContext,
  CacheOptionsError,
  resolveCacheOptions,
  type ResolvedCacheOptions,
} from "../cache/options.ts";
import { generate } from "../pipeline/generate.ts";
import { encodeImagesPng } from "../pipeline/image.ts";
import {
  formatIssues,
  resolveClass,
  type SamplingParams,
  samplingSchema,
} from "../pipeline/request_schema.ts";

const USAGE = "usage: deno task generate (--label L | --grid) --out FILE.png [--steps 28] [--seed 0] " +
  "[--guidance 1.5] [--sampler euler|ddim] [--shift 1] [--eta 0] [--model weights/mnist-dit] " +
  '[--cache fbcache|dbcache|\'{"strategy":"dbcache","Fn":1,...}\']';

class UsageError extends Error {}

interface CliRequest {
  labels: number[];
  out: string;
  model: string;
  sampling: SamplingParams;
  cache: ResolvedCacheOptions;
}

function parseCli(args: string[]): Promise<CliRequest> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        label: { type: "string" },
        grid: { type: "boolean", default: false },
        out: { type: "string" },
        model: { type: "string", default: "weights/mnist-dit" },
        steps: { type: "string" },
        seed: { type: "string" },
        guidance: { type: "string" },
        sampler: { type: "string" },
        shift: { type: "string" },
        eta: { type: "string" },
        cache: { type: "string", default: "none" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n${USAGE}`);
  }
  return resolveRequest(parsed.values);
}

async function resolveRequest(v: Record<string, string | boolean | undefined>): Promise<CliRequest> {
  const numbers: Record<string, number | string> = {};
  for (const key of ["steps", "seed", "guidance", "shift", "eta"]) {
    // Number("") is 0 and Number("1e400") is Infinity: both must be refused, so blanks become NaN.
    if (typeof v[key] === "string") numbers[key] = (v[key] as string).trim() === "" ? NaN : Number(v[key]);
  }
  if (typeof v.sampler === "string") numbers.sampler = v.sampler;
  const sampling = samplingSchema.safeParse(numbers);
  if (!sampling.success) throw new UsageError(formatIssues(sampling.error));
  if (typeof v.out !== "string" || !v.out.endsWith(".png")) {
    throw new UsageError(`--out must name a .png file\n${USAGE}`);
  }
  if ((v.label === undefined) === !v.grid) {
    throw new UsageError(`give exactly one of --label or --grid\n${USAGE}`);
  }
  const model = v.model as string;
  const c = await readConfig(`${model}/config.json`);
  let labels: number[];
  if (v.grid) {
    labels = c.class_names.map((_, i) => i);
  } else {
    const index = resolveClass(v.label as string, c.class_names, c.class_words);
    if (index === null) {
      throw new UsageError(
        `label: unknown class "${v.label}"; valid: ${c.class_names.join(", ")}` +
          (c.class_words ? ` (or ${c.class_words.join(", ")})` : ""),
      );
    }
    labels = [index];
  }
  return {
    labels,
    out: v.out,
    model,
    sampling: sampling.data,
    cache: resolveCache(v.cache as string, {
      blocks: c.depth,
      steps: sampling.data.steps,
      channels: c.hidden_size,
    }),
  };
}

/** `--cache fbcache` or a JSON object of cache options (../shared/design/cache-strategies.md names). */
function resolveCache(value: string, context: CacheContext): ResolvedCacheOptions {
  let input: unknown = { strategy: value };
  if (value.trim().startsWith("{")) {
    try {
      input = JSON.parse(value);
    } catch (e) {
      throw new UsageError(`cache: not a JSON object (${(e as Error).message})`);
    }
  }
  try {
    return resolveCacheOptions(input, context);
  } catch (e) {
    if (e instanceof CacheOptionsError) throw new UsageError(`cache: ${e.message}`);
    throw e;
  }
}

/** Temp file then rename: a failed or interrupted run never leaves a half-written PNG. */
async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const temp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeFile(temp, bytes);
  await Deno.rename(temp, path);
}

async function run(args: string[]): Promise<number> {
  let request: CliRequest;
  try {
    request = await parseCli(args);
  } catch (e) {
    if (e instanceof UsageError || e instanceof WeightsError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  try {
    const strategy = createStrategy(ctx, request.cache);
    const model = await Dit.load(ctx, request.model);
    const bar = new cliProgress.SingleBar({ clearOnComplete: true }, cliProgress.Presets.shades_classic);
    bar.start(request.sampling.steps, 0);
    const result = await generate(ctx, model, { labels: request.labels, ...request.sampling }, {
      strategy,
      onStep: () => bar.increment(),
    });
    strategy.release();
    bar.stop();
    await writeAtomically(request.out, encodeImagesPng(result.images, result.shape));
    console.log(JSON.stringify({
      out: request.out,
      images: request.labels.length,
      labels: request.labels.map((i) => model.config.class_names[i]),
      ...request.sampling,
      seconds: Number(result.seconds.toFixed(3)),
      secondsPerStep: Number((result.seconds / request.sampling.steps).toFixed(4)),
      readbacks: result.readbacks,
      cache: result.cache,
      adapter: ctx.gpu.info.adapter,
    }));
    model.release();
    return 0;
  } catch (e) {
    if (!(e instanceof WeightsError || e instanceof CacheOptionsError)) throw e;
    console.error(e.message);
    return 2;
  } finally {
    ctx.destroy();
  }
}

if (import.meta.main) Deno.exit(await run(Deno.args));
