// deno task forward --model COMPONENT_DIR --inputs IN.safetensors --out OUT.safetensors
// One forward of a component of a diffusers directory, on inputs named like the diffusers forward arguments,
// writing `sample` (output.sample): how anyone checks the engine against diffusers on their own checkpoint.
//   DiTTransformer2DModel (or Transformer2DModel): hidden_states [B, C, S, S], timestep [B], class_labels [B]
//   AutoencoderKL: z [B, latent_channels, h, w], decoded as vae.decode(z)
// Bad input: one line naming the tensor or file, exit code 2, nothing written. No GPU adapter: exit 1.
import { parseArgs } from "node:util";
import type { GpuContext } from "../gpu/context.ts";
import { submitDispatches } from "../gpu/kernel.ts";
import { readFloats } from "../gpu/readback.ts";
import { className, parseConfig, readJsonFile } from "../model/component_config.ts";
import { DIT_CLASS_NAMES, ditTransformerConfigSchema } from "../model/dit/config.ts";
import { DitTransformer } from "../model/dit/transformer.ts";
import { readFloat32Tensors, WeightsError } from "../model/safetensors.ts";
import { encodeSafetensors, writeFileAtomically } from "../model/safetensors_writer.ts";
import { autoencoderKlConfigSchema } from "../model/vae/config.ts";
import { AutoencoderKlDecoder } from "../model/vae/decoder.ts";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";

const USAGE = "usage: deno task forward --model COMPONENT_DIR --inputs IN.safetensors --out OUT.safetensors";
const COMPONENTS = [...DIT_CLASS_NAMES, "AutoencoderKL"];

class UsageError extends Error {}

type Inputs = Map<string, { shape: number[]; data: Float32Array }>;

function input(inputs: Inputs, name: string, shape: (number | string)[]): Float32Array {
  const t = inputs.get(name);
  const wanted = `[${shape.join(", ")}]`;
  if (!t) {
    throw new UsageError(
      `inputs: no tensor "${name}" ${wanted}; found ${[...inputs.keys()].join(", ") || "none"}`,
    );
  }
  const fits = t.shape.length === shape.length &&
    shape.every((d, i) => typeof d === "string" || d === t.shape[i]);
  if (!fits) throw new UsageError(`inputs: tensor "${name}" is [${t.shape.join(", ")}], expected ${wanted}`);
  return t.data;
}

/** Runs one forward and returns output.sample with its shape. */
type Forward = (ctx: GpuContext, inputs: Inputs) => Promise<{ shape: readonly number[]; data: Float32Array }>;

function transformerForward(dir: string, json: unknown): Forward {
  const config = parseConfig(`${dir}/config.json`, json, ditTransformerConfigSchema);
  return async (ctx, inputs) => {
    const batch = inputs.get("hidden_states")?.shape[0] ?? 0;
    const s = config.sample_size;
    const hidden = input(inputs, "hidden_states", ["B", config.in_channels, s, s]);
    const timestep = input(inputs, "timestep", [batch]);
    const labels = input(inputs, "class_labels", [batch]);
    const rows = config.num_embeds_ada_norm + 1;
    const bad = labels.findIndex((l) => !Number.isInteger(l) || l < 0 || l >= rows);
    if (bad >= 0) {
      throw new UsageError(
        `inputs: class_labels[${bad}] = ${labels[bad]} is outside 0..${rows - 1} (the last is the CFG row)`,
      );
    }
    const model = await DitTransformer.load(ctx, dir, config);
    try {
      const graph = model.graph(batch);
      ctx.pool.write(graph.x, hidden);
      ctx.pool.write(graph.t, timestep);
      ctx.pool.write(graph.labels, Uint32Array.from(labels));
      submitDispatches(ctx.gpu, [...graph.prologue, ...graph.blocks.flat(), ...graph.epilogue]);
      return { shape: graph.output.shape, data: await readFloats(ctx.gpu, graph.output) };
    } finally {
      model.release();
    }
  };
}

function vaeForward(dir: string, json: unknown): Forward {
  const config = parseConfig(`${dir}/config.json`, json, autoencoderKlConfigSchema);
  return async (ctx, inputs) => {
    const shape = inputs.get("z")?.shape ?? [];
    const z = input(inputs, "z", ["B", config.latent_channels, "h", "w"]);
    const vae = await AutoencoderKlDecoder.load(ctx, dir, config);
    try {
      const graph = vae.graph(shape as [number, number, number, number]);
      ctx.pool.write(graph.z, z);
      submitDispatches(ctx.gpu, graph.commands);
      return { shape: graph.output.shape, data: await readFloats(ctx.gpu, graph.output) };
    } finally {
      vae.release();
    }
  };
}

async function parse(args: string[]) {
  let values;
  try {
    values = parseArgs({
      args,
      options: { model: { type: "string" }, inputs: { type: "string" }, out: { type: "string" } },
      strict: true,
    }).values;
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n${USAGE}`);
  }
  if (!values.model || !values.inputs || !values.out) {
    throw new UsageError(`--model, --inputs and --out are required\n${USAGE}`);
  }
  if (!values.out.endsWith(".safetensors")) throw new UsageError("--out must name a .safetensors file");
  const json = await readJsonFile(`${values.model}/config.json`);
  const name = className(json);
  let forward: Forward;
  if ((DIT_CLASS_NAMES as readonly (string | null)[]).includes(name)) {
    forward = transformerForward(values.model, json);
  } else if (name === "AutoencoderKL") forward = vaeForward(values.model, json);
  else {
    throw new WeightsError(
      `${values.model}/config.json: _class_name ${JSON.stringify(name)} is not supported; supported: ${
        COMPONENTS.join(", ")
      }`,
    );
  }
  return { forward, inputs: await readFloat32Tensors(values.inputs), out: values.out, model: values.model };
}

async function run(args: string[]): Promise<number> {
  let job;
  try {
    job = await parse(args);
  } catch (e) {
    if (!(e instanceof UsageError || e instanceof WeightsError)) throw e;
    console.error(e.message);
    return 2;
  }
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  try {
    const started = performance.now();
    const sample = await job.forward(ctx, job.inputs);
    await writeFileAtomically(job.out, encodeSafetensors({ sample }, { model: job.model }));
    const seconds = Number(((performance.now() - started) / 1000).toFixed(3));
    console.log(
      JSON.stringify({ out: job.out, shape: sample.shape, seconds, adapter: ctx.gpu.info.adapter }),
    );
    return 0;
  } catch (e) {
    if (!(e instanceof UsageError || e instanceof WeightsError)) throw e;
    console.error(e.message);
    return 2;
  } finally {
    ctx.destroy();
  }
}

if (import.meta.main) Deno.exit(await run(Deno.args));
