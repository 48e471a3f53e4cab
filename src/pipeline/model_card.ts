// What a model directory is, read from its JSON files only (no weights, no GPU), so that the HTTP thread
// and the CLI can validate a request against the model before any GPU work: which pipeline runs it, the
// classes it takes, the size it draws, its block list (for the cache options) and its defaults.
// A directory is either a diffusers pipeline (model_index.json naming its components, each a directory
// with its own config) or the embedded single-component MnistDiT (config.json).
import { className, parseConfig, readJsonFile } from "../model/component_config.ts";
import { ditDims, type DitTransformerConfig, ditTransformerConfigSchema } from "../model/dit/config.ts";
import { type DitConfig, ditConfigSchema } from "../model/mnist_dit/config.ts";
import { WeightsError } from "../model/safetensors.ts";
import { type AutoencoderKlConfig, autoencoderKlConfigSchema, vaeScale } from "../model/vae/config.ts";
import { createSchedule, SCHEDULER_CLASSES } from "./schedulers/schedule.ts";

export const PIPELINES = ["DiTPipeline", "MnistDiT"] as const;
export type PipelineName = (typeof PIPELINES)[number];

export interface ClassLabels {
  /** Display name per class id. */
  names: string[];
  /** Every accepted spelling per class id (the name first), compared case-insensitively. */
  aliases: string[][];
  /** The label row that classifier-free guidance runs as "no class". */
  nullClass: number;
}

/** Accepted names besides the display names and the ids themselves ("seven" for "7"). */
export function classWords(classes: ClassLabels): string[] {
  return classes.aliases.flatMap((names, id) => names.slice(1).filter((n) => n !== String(id)));
}

interface CardBase {
  dir: string;
  classes: ClassLabels;
  /** The image size the model draws (pixels). */
  size: { width: number; height: number };
  /** Latents per image [C, H, W]: what --latents must hold. */
  latent: [number, number, number];
  /** Transformer blocks and the width of their stream: what cache options are checked against. */
  blocks: number;
  streamWidth: number;
  defaults: { steps: number; guidance: number };
  /** Request-selectable samplers; the first is the default. */
  samplers: readonly string[];
}

export type ModelCard =
  | CardBase & { pipeline: "MnistDiT"; config: DitConfig }
  | CardBase & {
    pipeline: "DiTPipeline";
    transformer: DitTransformerConfig;
    vae: AutoencoderKlConfig;
    /** scheduler_config.json as stored (its _class_name picks the scheduler). */
    scheduler: Record<string, unknown>;
  };

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function mnistCard(dir: string, config: DitConfig): ModelCard {
  return {
    pipeline: "MnistDiT",
    dir,
    config,
    classes: {
      names: config.class_names,
      aliases: config.class_names.map((
        name,
        i,
      ) => [name, ...(config.class_words ? [config.class_words[i]] : [])]),
      nullClass: config.null_class,
    },
    size: { width: config.sample_size, height: config.sample_size },
    latent: [config.in_channels, config.sample_size, config.sample_size],
    blocks: config.depth,
    streamWidth: config.hidden_size,
    defaults: { steps: 28, guidance: 1.5 },
    samplers: ["euler", "ddim"],
  };
}

/** id2label of DiT's model_index.json: {"207": "golden retriever", ...}, several names per class by commas. */
function ditClasses(path: string, count: number, id2label: unknown): ClassLabels {
  const aliases = Array.from({ length: count }, (_, i) => [String(i)]);
  if (id2label !== undefined && id2label !== null) {
    if (typeof id2label !== "object") throw new WeightsError(`${path}: id2label must map class ids to names`);
    for (const [key, value] of Object.entries(id2label as Record<string, unknown>)) {
      const id = Number(key);
      if (!Number.isInteger(id) || id < 0 || id >= count || typeof value !== "string") {
        throw new WeightsError(
          `${path}: id2label entry ${JSON.stringify(key)} must be a class id in 0..${
            count - 1
          } with a string`,
        );
      }
      aliases[id] = [...value.split(",").map((s) => s.trim()).filter((s) => s !== ""), String(id)];
    }
  }
  return { names: aliases.map((a) => a[0]), aliases, nullClass: count };
}

async function component(dir: string, index: Record<string, unknown>, name: string, file = "config.json") {
  const entry = index[name];
  if (!Array.isArray(entry) || entry[1] === null) {
    throw new WeightsError(`${dir}/model_index.json: the pipeline needs a "${name}" component`);
  }
  const path = `${dir}/${name}/${file}`;
  return { path, json: await readJsonFile(path) };
}

async function ditPipelineCard(dir: string, index: Record<string, unknown>): Promise<ModelCard> {
  const t = await component(dir, index, "transformer");
  const transformer = parseConfig(t.path, t.json, ditTransformerConfigSchema);
  const v = await component(dir, index, "vae");
  const vae = parseConfig(v.path, v.json, autoencoderKlConfigSchema);
  const s = await component(dir, index, "scheduler", "scheduler_config.json");
  // Built once here so that an unsupported scheduler is named when the model is listed, not at a request.
  createSchedule(s.path, s.json, 1);
  if (vae.latent_channels !== transformer.in_channels) {
    throw new WeightsError(
      `${v.path}: latent_channels ${vae.latent_channels} differs from the transformer's in_channels ${transformer.in_channels}`,
    );
  }
  const scale = vaeScale(vae);
  const side = transformer.sample_size * scale;
  return {
    pipeline: "DiTPipeline",
    dir,
    transformer,
    vae,
    scheduler: s.json as Record<string, unknown>,
    classes: ditClasses(`${dir}/model_index.json`, transformer.num_embeds_ada_norm, index.id2label),
    size: { width: side, height: side },
    latent: [transformer.in_channels, transformer.sample_size, transformer.sample_size],
    blocks: transformer.num_layers,
    streamWidth: ditDims(transformer).inner,
    // DiTPipeline's own defaults (guidance_scale 4.0); 50 steps with its DDIM scheduler.
    defaults: { steps: 50, guidance: 4 },
    samplers: ["default", ...SCHEDULER_CLASSES],
  };
}

/** Reads what `dir` is; throws naming the missing or invalid file. */
export async function readModelCard(dir: string): Promise<ModelCard> {
  if (!(await exists(dir))) throw new WeightsError(`${dir}: directory not found`);
  const indexPath = `${dir}/model_index.json`;
  if (await exists(indexPath)) {
    const index = await readJsonFile(indexPath) as Record<string, unknown>;
    const name = className(index);
    if (name === "DiTPipeline") return await ditPipelineCard(dir, index);
    throw new WeightsError(
      `${indexPath}: pipeline _class_name ${JSON.stringify(name)} is not supported; supported: ${
        PIPELINES.join(", ")
      }`,
    );
  }
  const configPath = `${dir}/config.json`;
  if (!(await exists(configPath))) {
    throw new WeightsError(`${dir}: not a diffusers model directory: no model_index.json or config.json`);
  }
  const json = await readJsonFile(configPath);
  const name = className(json);
  if (name === "MnistDiT") return mnistCard(dir, parseConfig(configPath, json, ditConfigSchema));
  throw new WeightsError(
    `${configPath}: _class_name ${JSON.stringify(name)} is not a pipeline; supported: ${
      PIPELINES.join(", ")
    } ` +
      "(a component directory runs with deno task forward)",
  );
}
