// diffusers' FluxPipeline directory (FLUX.1 dev and schnell): the transformer, a 16-channel AutoencoderKL,
// FlowMatchEulerDiscreteScheduler, and the two text encoders with their tokenizers: CLIP (pooled) and T5
// (per token). The text components may be saved as null, as diffusers allows: such a model takes
// precomputed prompt_embeds only. A component that model_index.json lists must exist on disk, and is named
// here, when the model is read, not at its first prompt.
import { exists, parseConfig, readJsonFile } from "../../model/component_config.ts";
import { fluxDims, fluxTransformerConfigSchema } from "../../model/flux/config.ts";
import { WeightsError } from "../../model/safetensors.ts";
import { clipTextConfigSchema, t5ConfigSchema } from "../../model/text/config.ts";
import { autoencoderKlConfigSchema, vaeScale } from "../../model/vae/config.ts";
import type { FluxCard, TextInputs } from "../model_card.ts";
import { createSchedule } from "../schedulers/schedule.ts";
import { fitsSizeRule, type SizeRule } from "../size_rule.ts";
import { component, listed } from "./component.ts";
import { ditserveSection } from "./ditserve_section.ts";

const TEXT_COMPONENTS = ["text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"] as const;
/** FluxPipeline's default_sample_size: latents per side before the VAE's upsampling. */
const DEFAULT_SAMPLE_SIZE = 128;
/** CLIP's tokenizer pads and truncates to its 77 positions. */
const CLIP_TOKENS = 77;

async function textEncoders(
  dir: string,
  index: Record<string, unknown>,
  dims: { joint: number; pooled: number },
) {
  const absent = TEXT_COMPONENTS.filter((name) => !listed(index, name));
  if (absent.length > 0) return { encoders: null, absent };
  for (const name of ["tokenizer", "tokenizer_2"]) {
    if (!(await exists(`${dir}/${name}`))) {
      throw new WeightsError(`${dir}/${name}: directory not found; model_index.json lists "${name}"`);
    }
  }
  const c = await component(dir, index, "text_encoder");
  const clip = parseConfig(c.path, c.json, clipTextConfigSchema);
  const t = await component(dir, index, "text_encoder_2");
  const t5 = parseConfig(t.path, t.json, t5ConfigSchema);
  if (t5.d_model !== dims.joint) {
    throw new WeightsError(
      `${t.path}: d_model ${t5.d_model} differs from the transformer's joint_attention_dim ${dims.joint}`,
    );
  }
  if (clip.hidden_size !== dims.pooled) {
    throw new WeightsError(
      `${c.path}: hidden_size ${clip.hidden_size} differs from the transformer's pooled_projection_dim ${dims.pooled}`,
    );
  }
  return { encoders: { clip, t5 }, absent };
}

/**
 * FluxPipeline's max_sequence_length: 512 for dev; schnell's T5 was distilled at 256. A T5 tokenizer whose
 * model_max_length is shorter says the encoder was trained at that length, and is padded to it.
 */
async function t5Tokens(dir: string, dev: boolean, withEncoders: boolean): Promise<number> {
  const fallback = dev ? 512 : 256;
  if (!withEncoders) return fallback;
  const path = `${dir}/tokenizer_2/tokenizer_config.json`;
  if (!(await exists(path))) return fallback;
  const max = (await readJsonFile(path) as { model_max_length?: unknown }).model_max_length;
  return typeof max === "number" && Number.isInteger(max) && max > 0 ? Math.min(fallback, max) : fallback;
}

export async function fluxPipelineCard(dir: string, index: Record<string, unknown>): Promise<FluxCard> {
  const tc = await component(dir, index, "transformer");
  const transformer = parseConfig(tc.path, tc.json, fluxTransformerConfigSchema);
  const v = await component(dir, index, "vae");
  const vae = parseConfig(v.path, v.json, autoencoderKlConfigSchema);
  const s = await component(dir, index, "scheduler", "scheduler_config.json");
  if ((s.json as { _class_name?: unknown })._class_name !== "FlowMatchEulerDiscreteScheduler") {
    throw new WeightsError(`${s.path}: FluxPipeline takes FlowMatchEulerDiscreteScheduler only`);
  }
  createSchedule(s.path, s.json, 1, { mu: 0 });
  if (4 * vae.latent_channels !== transformer.in_channels) {
    throw new WeightsError(
      `${tc.path}: in_channels ${transformer.in_channels} must be 4 x the VAE's latent_channels ` +
        `${vae.latent_channels} (FLUX packs 2x2 latents)`,
    );
  }
  const dims = { joint: transformer.joint_attention_dim, pooled: transformer.pooled_projection_dim };
  const { encoders, absent } = await textEncoders(dir, index, dims);
  const scheduler = s.json as Record<string, unknown>;
  const maxTokens = typeof scheduler.max_image_seq_len === "number" ? scheduler.max_image_seq_len : 4096;
  const scale = vaeScale(vae);
  // A packed token is 2x2 latents, vae_scale_factor pixels each.
  const rule: SizeRule = { multiple: 2 * scale, maxPixels: maxTokens * (2 * scale) ** 2 };
  const section = ditserveSection(dir, index);
  if (section.size) checkPinnedSize(dir, section.size, rule);
  const side = DEFAULT_SAMPLE_SIZE * scale;
  const dev = transformer.guidance_embeds;
  const text: TextInputs = {
    encoders,
    absent: [...absent],
    maxSequenceLength: await t5Tokens(dir, dev, encoders !== null),
    clipTokens: CLIP_TOKENS,
    promptEmbedDim: dims.joint,
    pooledDim: dims.pooled,
  };
  return {
    pipeline: "FluxPipeline",
    dir,
    transformer,
    vae,
    scheduler,
    classes: null,
    text,
    description: section.description,
    size: section.size ?? { width: side, height: side },
    sizes: section.size ? null : rule,
    blocks: fluxDims(transformer).blocks,
    streamWidth: fluxDims(transformer).inner,
    // FluxPipeline's defaults (28 steps, guidance_scale 3.5) for dev; schnell is distilled to 4 steps and
    // has no guidance embedding.
    defaults: {
      ...(dev ? { steps: 28, guidance: 3.5 } : { steps: 4, guidance: 0 }),
      ...(section.steps ? { steps: section.steps } : {}),
    },
    samplers: ["default"],
    cfgPasses: "batched",
    video: null,
  };
}

function checkPinnedSize(dir: string, size: { width: number; height: number }, rule: SizeRule): void {
  if (!fitsSizeRule(size, rule)) {
    throw new WeightsError(
      `${dir}/model_index.json: _ditserve.size ${size.width}x${size.height} must have both sides multiples ` +
        `of ${rule.multiple} and at most ${rule.maxPixels} pixels (the scheduler's max_image_seq_len)`,
    );
  }
}
