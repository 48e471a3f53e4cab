// diffusers' WanPipeline directory (Wan2.1 text-to-video, 1.3B and 14B): WanTransformer3DModel,
// AutoencoderKLWan, UniPCMultistepScheduler (flow prediction with flow_shift) or FlowMatchEuler, and UMT5 with
// its tokenizer, which may be saved as null (the model then takes precomputed prompt_embeds). What Wan2.2 adds
// (a second transformer with boundary_ratio, expand_timesteps) is refused by name.
import { parseConfig } from "../../model/component_config.ts";
import { WeightsError } from "../../model/safetensors.ts";
import { umt5ConfigSchema } from "../../model/text/config.ts";
import { wanDims, wanTransformerConfigSchema } from "../../model/wan/config.ts";
import { type WanVaeConfig, wanVaeConfigSchema, wanVaeScale } from "../../model/wan_vae/config.ts";
import type { UmT5TextInputs, WanCard } from "../model_card.ts";
import { createSchedule } from "../schedulers/schedule.ts";
import type { SizeRule } from "../size_rule.ts";
import { component, listed } from "./component.ts";
import { ditserveSection } from "./ditserve_section.ts";

const TEXT_COMPONENTS = ["text_encoder", "tokenizer"] as const;
/** WanPipeline's defaults: 832x480, 81 frames, 50 steps, guidance_scale 5.0, 512 UMT5 tokens. */
const DEFAULT_SIZE = { width: 832, height: 480 };
const DEFAULT_FRAMES = 81;
const MAX_SEQUENCE_LENGTH = 512;
/** Wan2.1's export_to_video frame rate. */
const FPS = 16;
/** WanPipeline's check_inputs: height and width divisible by 16 (8 of the VAE x 2 of the patch). */
const SIZE_MULTIPLE = 16;
/** One frame's pixels at most: 720p, the largest size Wan2.1 was trained at (14B). */
const MAX_FRAME_PIXELS = 1280 * 720;
const SCHEDULERS = ["UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"] as const;

function refuseWan22(dir: string, index: Record<string, unknown>): void {
  const path = `${dir}/model_index.json`;
  if (listed(index, "transformer_2") || (index.boundary_ratio ?? null) !== null) {
    throw new WeightsError(
      `${path}: transformer_2 / boundary_ratio (Wan2.2's two-expert denoising) is not supported; ` +
        "allowed: transformer_2 null and boundary_ratio null (Wan2.1)",
    );
  }
  if (index.expand_timesteps === true) {
    throw new WeightsError(
      `${path}: expand_timesteps true (Wan2.2 TI2V's per-token timesteps) is not supported; allowed: false`,
    );
  }
}

async function textEncoder(dir: string, index: Record<string, unknown>, textDim: number) {
  const absent = TEXT_COMPONENTS.filter((name) => !listed(index, name));
  if (absent.length > 0) return { encoders: null, absent };
  await component(dir, index, "tokenizer", "tokenizer_config.json").catch((e) => {
    if (e instanceof WeightsError) throw e;
    throw new WeightsError(`${dir}/tokenizer/tokenizer_config.json: ${(e as Error).message}`);
  });
  const t = await component(dir, index, "text_encoder");
  const umt5 = parseConfig(t.path, t.json, umt5ConfigSchema);
  if (umt5.d_model !== textDim) {
    throw new WeightsError(
      `${t.path}: d_model ${umt5.d_model} differs from the transformer's text_dim ${textDim}`,
    );
  }
  return { encoders: { umt5 }, absent };
}

/** diffusers sizes latents by the config's scale_factor_*; a config its layers contradict would decode garbage. */
function checkVaeScale(path: string, vae: WanVaeConfig): void {
  const layers = wanVaeScale(vae);
  for (
    const [key, actual] of [["scale_factor_spatial", layers.spatial], [
      "scale_factor_temporal",
      layers.temporal,
    ]] as const
  ) {
    if (vae[key] !== actual) {
      throw new WeightsError(`${path}: ${key} ${vae[key]} differs from what its up blocks do (${actual})`);
    }
  }
}

export async function wanPipelineCard(dir: string, index: Record<string, unknown>): Promise<WanCard> {
  refuseWan22(dir, index);
  const tc = await component(dir, index, "transformer");
  const transformer = parseConfig(tc.path, tc.json, wanTransformerConfigSchema);
  const v = await component(dir, index, "vae");
  const vae = parseConfig(v.path, v.json, wanVaeConfigSchema);
  const s = await component(dir, index, "scheduler", "scheduler_config.json");
  const schedulerClass = (s.json as { _class_name?: unknown })._class_name;
  if (!SCHEDULERS.includes(schedulerClass as typeof SCHEDULERS[number])) {
    throw new WeightsError(
      `${s.path}: _class_name ${JSON.stringify(schedulerClass)} is not supported by WanPipeline; ` +
        `supported: ${SCHEDULERS.join(", ")}`,
    );
  }
  createSchedule(s.path, s.json, 1);
  if (vae.z_dim !== transformer.in_channels) {
    throw new WeightsError(
      `${tc.path}: in_channels ${transformer.in_channels} must equal the VAE's z_dim ${vae.z_dim}`,
    );
  }
  checkVaeScale(v.path, vae);
  const { encoders, absent } = await textEncoder(dir, index, transformer.text_dim);
  const text: UmT5TextInputs = {
    encoders,
    absent: [...absent],
    maxSequenceLength: MAX_SEQUENCE_LENGTH,
    promptEmbedDim: transformer.text_dim,
  };
  const section = ditserveSection(dir, index);
  const rule: SizeRule = { multiple: SIZE_MULTIPLE, maxPixels: MAX_FRAME_PIXELS };
  return {
    pipeline: "WanPipeline",
    dir,
    transformer,
    vae,
    scheduler: s.json as Record<string, unknown>,
    classes: null,
    text,
    description: section.description,
    size: section.size ?? DEFAULT_SIZE,
    sizes: section.size ? null : rule,
    blocks: transformer.num_layers,
    streamWidth: wanDims(transformer).inner,
    defaults: { steps: section.steps ?? 50, guidance: 5 },
    // FlowMatchEuler runs on the directory's flow_shift in UniPC's place; UniPC needs its own config.
    samplers: [
      "default",
      ...SCHEDULERS.filter((name) => name !== "UniPCMultistepScheduler" || schedulerClass === name),
    ],
    cfgPasses: "separate",
    video: { frames: DEFAULT_FRAMES, fps: FPS, framesPerLatent: vae.scale_factor_temporal },
  };
}
