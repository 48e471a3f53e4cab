// diffusers' DiTPipeline directory: a class-conditional transformer, an AutoencoderKL and a scheduler, with
// the ImageNet class names in model_index.json's id2label.
import { parseConfig } from "../../model/component_config.ts";
import { ditDims, ditTransformerConfigSchema } from "../../model/dit/config.ts";
import { WeightsError } from "../../model/safetensors.ts";
import { autoencoderKlConfigSchema, vaeScale } from "../../model/vae/config.ts";
import type { ClassCard, ClassLabels } from "../model_card.ts";
import { createSchedule, SCHEDULER_CLASSES } from "../schedulers/schedule.ts";
import { ditserveSection } from "./ditserve_section.ts";
import { component } from "./component.ts";

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

export async function ditPipelineCard(dir: string, index: Record<string, unknown>): Promise<ClassCard> {
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
  const side = transformer.sample_size * vaeScale(vae);
  return {
    pipeline: "DiTPipeline",
    dir,
    transformer,
    vae,
    scheduler: s.json as Record<string, unknown>,
    classes: ditClasses(`${dir}/model_index.json`, transformer.num_embeds_ada_norm, index.id2label),
    text: null,
    description: ditserveSection(dir, index).description,
    size: { width: side, height: side },
    sizes: null,
    blocks: transformer.num_layers,
    streamWidth: ditDims(transformer).inner,
    // DiTPipeline's own defaults (guidance_scale 4.0); 50 steps with its DDIM scheduler.
    defaults: { steps: 50, guidance: 4 },
    samplers: ["default", ...SCHEDULER_CLASSES],
    cfgPasses: "batched",
    video: null,
  };
}
