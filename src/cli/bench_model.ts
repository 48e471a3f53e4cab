// deno task bench:model [--model weights/mnist-dit] [--per-digit 100] [--steps 28] [--guidance 3] [--batch 25]
//   [--json]
// deno task bench:model --model weights/mnist-flux [--per-digit 10] [--steps 20] [--true-cfg S] [--batch 8]
//   [--torch-images 10] [--python P --diffusers-src D] [--json]
// Quality and speed of a digit model, in one run. The embedded class model: classifier accuracy on the asked
// digit, Frechet distance of classifier features against held-out real digits, seconds per step, the model's
// effective GFLOP/s next to the matmul kernel's and next to the same model in PyTorch on this CPU. A
// text-to-digit FluxPipeline: see bench/text_model.ts.
import { parseArgs } from "node:util";
import type { GpuContext } from "../gpu/context.ts";
import { DigitClassifier } from "../model/classifier.ts";
import { WeightsError } from "../model/safetensors.ts";
import { type FluxCard, type ModelCard, readModelCard } from "../pipeline/model_card.ts";
import { MnistDitPipeline } from "../pipeline/pipelines/mnist_dit.ts";
import { LIMITS, resolveRequest } from "../pipeline/request.ts";
import { MAX_IMAGES } from "../server/schemas.ts";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { DigitScores } from "./bench/digit_scores.ts";
import { matmulKernelGflops } from "./bench/harness.ts";
import { benchTextModel, type TextBenchFlags } from "./bench/text_model.ts";
import { requireHeldOutPrompts } from "./bench/heldout_prompts.ts";

const USAGE = "usage: deno task bench:model [--model weights/mnist-dit] [--per-digit 100] [--steps 28] " +
  "[--guidance 3] [--batch 25] [--json]\n" +
  "       deno task bench:model --model weights/mnist-flux [--per-digit 10] [--steps 20] [--true-cfg S] " +
  "[--batch 8] [--torch-images 10] [--python P --diffusers-src D] [--json]";
const MAX_PER_DIGIT = 10_000;

class FlagError extends Error {}

type Values = Record<string, string | boolean | undefined>;

/** A flag's number in min..max (an integer where asked), its fallback when absent. */
function flag(values: Values, name: string, fallback: number, min: number, max: number, integer = true) {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!(integer ? Number.isInteger(n) : Number.isFinite(n)) || n < min || n > max) {
    throw new FlagError(`--${name} ${raw}: must be ${integer ? "an integer" : "a number"} in ${min}..${max}`);
  }
  return n;
}

function refuse(values: Values, names: string[], why: string): void {
  const given = names.find((name) => values[name] !== undefined);
  if (given) throw new FlagError(`--${given}: ${why}`);
}

/** PyTorch forward time per sample on this CPU, from the training script; null where torch is missing. */
async function pytorchForward(python: string): Promise<{ msPerSample: number; batch: number } | null> {
  try {
    const out = await new Deno.Command(python, {
      args: ["tools/train_mnist_dit.py", "--bench"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return null;
    const report = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
    return { msPerSample: report.forward_ms_per_sample_batch8, batch: 8 };
  } catch {
    return null;
  }
}

function classFlags(values: Values) {
  refuse(
    values,
    ["true-cfg", "torch-images", "diffusers-src"],
    "applies to text models (--model weights/mnist-flux)",
  );
  return {
    perDigit: flag(values, "per-digit", 100, 1, MAX_PER_DIGIT),
    steps: flag(values, "steps", 28, LIMITS.steps.min, LIMITS.steps.max),
    guidance: flag(values, "guidance", 3, LIMITS.guidance.min, LIMITS.guidance.max, false),
    batch: flag(values, "batch", 25, 1, 1000),
    python: (values.python as string | undefined) ?? "/usr/bin/python3",
  };
}

async function benchClassModel(
  ctx: GpuContext,
  card: Extract<ModelCard, { pipeline: "MnistDiT" }>,
  flags: ReturnType<typeof classFlags>,
  quiet: boolean,
) {
  const { perDigit, steps, guidance, batch } = flags;
  const model = await MnistDitPipeline.load(ctx, card);
  const classifier = await DigitClassifier.load(ctx);
  const scores = new DigitScores(classifier);
  const labels = Array.from({ length: 10 * perDigit }, (_, i) => i % 10);
  let seconds = 0;
  let forwards = 0;
  for (let start = 0; start < labels.length; start += batch) {
    const chunk = labels.slice(start, start + batch);
    const request = resolveRequest(card, {
      labels: chunk,
      steps,
      seed: 1000 + start,
      guidance,
      shift: 1,
      eta: 0,
      cache: "none",
    });
    const result = await model.run(request);
    seconds += result.seconds;
    forwards += (guidance === 1 ? 1 : 2) * chunk.length * steps;
    await scores.add(result.images, chunk);
    if (!quiet) console.error(`${start + chunk.length}/${labels.length} images`);
  }
  const { accuracy, accuracyPerDigit, frechetDistance } = await scores.summary();
  const modelGflops = (forwards * model.flopsPerSample) / seconds / 1e9;
  const kernelGflops = await matmulKernelGflops(ctx);
  const torch = await pytorchForward(flags.python);
  classifier.release();
  model.release();
  return {
    adapter: `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`,
    weights: `${card.dir} (${card.config.trained_iterations} iterations)`,
    images: labels.length,
    steps,
    guidance,
    batch,
    accuracy,
    accuracyPerDigit,
    frechetDistance,
    secondsPerStep: seconds / (steps * Math.ceil(labels.length / batch)),
    secondsPerImage: seconds / labels.length,
    modelGflops,
    matmulKernelGflops: kernelGflops,
    modelShareOfKernel: modelGflops / kernelGflops,
    pytorchGflops: torch ? model.flopsPerSample / (torch.msPerSample / 1000) / 1e9 : null,
  };
}

async function textFlags(values: Values, card: FluxCard): Promise<TextBenchFlags> {
  if (!card.text.encoders) throw new FlagError(`--model ${card.dir}: its text encoders are null`);
  await requireHeldOutPrompts(card.dir);
  if (!card.transformer.guidance_embeds) {
    refuse(values, ["guidance"], `${card.dir} has no guidance embedding; --true-cfg S runs true CFG`);
  }
  const perDigit = flag(values, "per-digit", 10, 1, MAX_PER_DIGIT);
  return {
    perDigit,
    steps: flag(values, "steps", card.defaults.steps, LIMITS.steps.min, LIMITS.steps.max),
    guidance: flag(
      values,
      "guidance",
      card.defaults.guidance,
      LIMITS.guidance.min,
      LIMITS.guidance.max,
      false,
    ),
    trueCfg: flag(values, "true-cfg", 1, LIMITS.true_cfg.min, LIMITS.true_cfg.max, false),
    batch: flag(values, "batch", MAX_IMAGES, 1, MAX_IMAGES),
    torchImages: flag(values, "torch-images", Math.min(10, 10 * perDigit), 0, 10 * perDigit),
    python: (values.python as string | undefined) ?? "/usr/bin/python3",
    diffusersSrc: values["diffusers-src"] as string | undefined,
    quiet: values.json === true,
  };
}

/** The run the flags and the model ask for, checked before any GPU work. */
async function plan(values: Values): Promise<(ctx: GpuContext) => Promise<object>> {
  const card = await readModelCard(values.model as string);
  const quiet = values.json === true;
  switch (card.pipeline) {
    case "MnistDiT": {
      const flags = classFlags(values);
      return (ctx) => benchClassModel(ctx, card, flags, quiet);
    }
    case "FluxPipeline": {
      const flags = await textFlags(values, card);
      return (ctx) => benchTextModel(ctx, card, flags);
    }
    default:
      throw new FlagError(
        `--model ${card.dir}: a ${card.pipeline}; bench:model runs MnistDiT or a FluxPipeline`,
      );
  }
}

async function main(): Promise<number> {
  let values: Values;
  let bench;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        model: { type: "string", default: "weights/mnist-dit" },
        "per-digit": { type: "string" },
        steps: { type: "string" },
        guidance: { type: "string" },
        "true-cfg": { type: "string" },
        batch: { type: "string" },
        "torch-images": { type: "string" },
        python: { type: "string" },
        "diffusers-src": { type: "string" },
        json: { type: "boolean", default: false },
      },
    }));
    bench = await plan(values);
  } catch (e) {
    const parse = String((e as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS");
    if (!(e instanceof FlagError || e instanceof WeightsError || parse)) throw e;
    // node:util names the flag in its first sentence and then explains positional arguments.
    console.error(e instanceof WeightsError ? `--model: ${e.message}` : (e as Error).message.split(". ")[0]);
    console.error(USAGE);
    return 2;
  }
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  try {
    const report = await bench(ctx);
    console.log(values.json ? JSON.stringify(report) : JSON.stringify(report, null, 2));
  } finally {
    ctx.destroy();
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
