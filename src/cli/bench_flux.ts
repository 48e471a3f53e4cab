// deno task bench:flux --model DIR [--size 512] [--text-tokens 512] [--t5-tokens 512] [--repeat 1]
//   [--python PYTHON] [--diffusers-src DIR] [--json]
// FLUX.1 at its real width from a few blocks (tools/flux_random_blocks.py writes DIR: transformer/,
// text_encoder/, text_encoder_2/ with random BF16 weights): one double- and one single-stream block at batch 1
// on a --size square image and --text-tokens text tokens, timed on this adapter as whole submits waited on,
// their GFLOP/s next to the matmul kernel's in the same run; the whole model's step time and GPU memory at
// 1024x1024 extrapolated from those rows (the method is printed with them); CLIP (its 77 positions) and T5
// (--t5-tokens) per layer and extrapolated to CLIP-L's 12 and T5-XXL's 24 layers; and, with --python, the
// same blocks and encoders in diffusers / transformers on PyTorch (CPU), from the same weights and inputs in
// the same run, as ratios (engine seconds / PyTorch seconds), with the engine's outputs checked against
// PyTorch's. Prints a markdown table, or with --json the whole report.
import { parseArgs } from "node:util";
import type { z } from "zod";
import { parseConfig, readJsonFile } from "../model/component_config.ts";
import { fluxTransformerConfigSchema } from "../model/flux/config.ts";
import { readFloat32Tensors, WeightsError } from "../model/safetensors.ts";
import { encodeSafetensors } from "../model/safetensors_writer.ts";
import { ClipTextModel } from "../model/text/clip_text_model.ts";
import { clipTextConfigSchema, t5ConfigSchema } from "../model/text/config.ts";
import { T5Encoder } from "../model/text/t5_encoder.ts";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { measureFlux } from "./bench/flux_blocks.ts";
import {
  type EngineMeasurement,
  fluxReport,
  type TorchReference,
  type TorchSide,
} from "./bench/flux_report.ts";
import { fluxTable } from "./bench/flux_table.ts";
import { matmulKernelGflops } from "./bench/harness.ts";
import { pythonProblem, pythonReference } from "./bench/python_reference.ts";
import { outputErrors } from "./bench/reference_error.ts";
import { clipLayerFlops, measureEncoder, t5LayerFlops } from "./bench/text_encoders.ts";

const SCRIPT = "tools/flux_random_blocks.py";

const USAGE = "usage: deno task bench:flux --model DIR [--size 512] [--text-tokens 512] [--t5-tokens 512] " +
  "[--repeat 1] [--python PYTHON] [--diffusers-src DIR] [--json]";

class FlagError extends Error {}

function parseFlags(args: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        model: { type: "string" },
        size: { type: "string", default: "512" },
        "text-tokens": { type: "string", default: "512" },
        "t5-tokens": { type: "string", default: "512" },
        repeat: { type: "string", default: "1" },
        python: { type: "string" },
        "diffusers-src": { type: "string" },
        json: { type: "boolean", default: false },
      },
    }));
  } catch (e) {
    // node:util names the flag in its first sentence and then explains positional arguments.
    throw new FlagError((e as Error).message.split(". ")[0]);
  }
  const positive = (name: "size" | "text-tokens" | "t5-tokens" | "repeat") => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 1) {
      throw new FlagError(`--${name} ${values[name]}: must be a positive integer`);
    }
    return n;
  };
  if (!values.model) {
    throw new FlagError("--model DIR is required (a directory of tools/flux_random_blocks.py)");
  }
  const size = positive("size");
  // The memory fit builds a second graph with half the token rows: the grid's height must be even.
  if (size % 32 !== 0) throw new FlagError(`--size ${size}: must be a multiple of 32`);
  return {
    model: values.model,
    size,
    textTokens: positive("text-tokens"),
    t5Tokens: positive("t5-tokens"),
    repeat: positive("repeat"),
    python: values.python,
    diffusersSrc: values["diffusers-src"],
    json: values.json,
  };
}

type Flags = ReturnType<typeof parseFlags>;

async function readConfig<S extends z.ZodType>(path: string, schema: S): Promise<z.infer<S>> {
  return parseConfig(path, await readJsonFile(path), schema);
}

async function readConfigs(dir: string) {
  const flux = await readConfig(`${dir}/transformer/config.json`, fluxTransformerConfigSchema);
  if (flux.num_layers < 1 || flux.num_single_layers < 1) {
    throw new WeightsError(`${dir}/transformer: bench:flux needs at least one block of each kind`);
  }
  return {
    flux,
    clip: await readConfig(`${dir}/text_encoder/config.json`, clipTextConfigSchema),
    t5: await readConfig(`${dir}/text_encoder_2/config.json`, t5ConfigSchema),
  };
}

type Configs = Awaited<ReturnType<typeof readConfigs>>;

const started = performance.now();
/** A line on stderr as each part begins: at FLUX.1's width on a software adapter a run takes an hour. */
const progress = (part: string) =>
  console.error(`bench:flux +${((performance.now() - started) / 1000).toFixed(0)} s: ${part}`);

/** Everything the engine measures, one model on the GPU at a time; null without an adapter. */
async function engineSide(flags: Flags, configs: Configs): Promise<EngineMeasurement | null> {
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return null;
  try {
    const { model: dir, repeat } = flags;
    progress("the transformer's blocks (load, two graphs, timings, one forward)");
    const blocks = await measureFlux(
      ctx,
      `${dir}/transformer`,
      configs.flux,
      flags.size,
      flags.textTokens,
      repeat,
    );
    // The whole position table, as FluxPipeline pads every prompt to it.
    const clipTokens = configs.clip.max_position_embeddings;
    progress("CLIP");
    const clip = await measureEncoder(
      ctx,
      await ClipTextModel.load(ctx, `${dir}/text_encoder`, configs.clip),
      {
        tokens: clipTokens,
        vocab: configs.clip.vocab_size,
        flops: clipLayerFlops(configs.clip, clipTokens),
        repeat,
      },
      (g) => ({ last_hidden_state: g.lastHiddenState, pooler_output: g.poolerOutput }),
    );
    const t5Tokens = flags.t5Tokens;
    progress("T5");
    const t5 = await measureEncoder(
      ctx,
      await T5Encoder.load(ctx, `${dir}/text_encoder_2`, configs.t5),
      { tokens: t5Tokens, vocab: configs.t5.vocab_size, flops: t5LayerFlops(configs.t5, t5Tokens), repeat },
      (g) => ({ last_hidden_state: g.lastHiddenState }),
    );
    progress("the matmul kernel at 1024^3");
    return {
      adapter: `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`,
      maxStorageBufferBindingSize: ctx.gpu.info.limits.maxStorageBufferBindingSize,
      kernelGflops: await matmulKernelGflops(ctx),
      blocks,
      clip,
      t5,
    };
  } finally {
    ctx.destroy();
  }
}

const prefixed = (prefix: string, outputs: Record<string, Float32Array>) =>
  Object.fromEntries(Object.entries(outputs).map(([name, v]) => [`${prefix}.${name}`, v]));

/**
 * diffusers' and transformers' timings from the engine's inputs (the token ids are the same formula on both
 * sides), and how far the engine's outputs are from theirs.
 */
async function torchSide(python: string, flags: Flags, engine: EngineMeasurement): Promise<TorchSide> {
  const dir = await Deno.makeTempDir({ prefix: "bench-flux-" });
  try {
    const [inputs, outputs] = [`${dir}/inputs.safetensors`, `${dir}/torch.safetensors`];
    await Deno.writeFile(inputs, encodeSafetensors(engine.blocks.inputs));
    progress(`PyTorch (${SCRIPT})`);
    const reference = await pythonReference<TorchReference>(python, flags.diffusersSrc, SCRIPT, [
      ...["--bench", flags.model, "--inputs", inputs, "--outputs", outputs, "--size", String(flags.size)],
      ...["--t5-tokens", String(flags.t5Tokens), "--repeat", String(flags.repeat)],
    ]);
    const errors = outputErrors({
      ...engine.blocks.outputs,
      ...prefixed("clip", engine.clip.outputs),
      ...prefixed("t5", engine.t5.outputs),
    }, await readFloat32Tensors(outputs));
    return { reference, errors };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function main(): Promise<number> {
  let flags: Flags;
  let configs: Configs;
  try {
    flags = parseFlags(Deno.args);
    configs = await readConfigs(flags.model);
  } catch (e) {
    if (!(e instanceof FlagError || e instanceof WeightsError)) throw e;
    console.error(e instanceof WeightsError ? `--model: ${e.message}` : e.message);
    console.error(USAGE);
    return 2;
  }
  const python = flags.python;
  const problem = python &&
    await pythonProblem(python, flags.diffusersSrc, ["torch", "diffusers", "transformers"]);
  if (problem) {
    console.error(problem);
    return 2;
  }
  const engine = await engineSide(flags, configs);
  if (!engine) return 1;
  const torch = python ? await torchSide(python, flags, engine) : null;
  const report = fluxReport({ ...flags, configs }, engine, torch);
  console.log(flags.json ? JSON.stringify(report) : fluxTable(report));
  return 0;
}

if (import.meta.main) Deno.exit(await main());
