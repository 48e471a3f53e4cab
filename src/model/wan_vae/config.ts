// config.json of diffusers' AutoencoderKLWan, with diffusers' defaults (Wan2.1's VAE). Only the decoder runs
// here; Wan2.2's VAE (is_residual: residual up blocks, patch_size 2) is refused by name.
import { z } from "zod";
import { MAX_HEAD_DIM } from "../../ops/attention.ts";

const positiveInt = z.number().int().positive();

/** Wan2.1's published latents_mean and latents_std (diffusers' defaults). */
const LATENTS_MEAN = [
  -0.7571,
  -0.7089,
  -0.9113,
  0.1075,
  -0.1745,
  0.9653,
  -0.1517,
  1.5508,
  0.4134,
  -0.0715,
  0.5517,
  -0.3632,
  -0.1922,
  -0.9497,
  0.2503,
  -0.2921,
];
const LATENTS_STD = [
  2.8184,
  1.4541,
  2.3275,
  2.6558,
  1.2196,
  1.7708,
  2.6052,
  2.0743,
  3.2687,
  2.1526,
  2.8652,
  1.5579,
  1.6382,
  1.1253,
  2.8251,
  1.9160,
];

const WAN22 = "is the Wan2.2 VAE (residual up blocks, patchified frames), which this engine does not run; " +
  "only Wan2.1's AutoencoderKLWan is supported";

export const wanVaeConfigSchema = z.looseObject({
  _class_name: z.literal("AutoencoderKLWan"),
  base_dim: positiveInt.default(96),
  decoder_base_dim: positiveInt.nullable().default(null),
  z_dim: positiveInt.default(16),
  dim_mult: z.array(positiveInt).min(1).default([1, 2, 4, 4]),
  num_res_blocks: positiveInt.default(2),
  // The encoder's; the decoder has attention in its mid block only.
  attn_scales: z.array(z.number()).default([]),
  temperal_downsample: z.array(z.boolean()).default([false, true, true]),
  // Inference runs no dropout.
  dropout: z.number().min(0).max(1).default(0),
  latents_mean: z.array(z.number()).default(LATENTS_MEAN),
  latents_std: z.array(z.number().positive()).default(LATENTS_STD),
  is_residual: z.literal(false, { error: `is_residual true ${WAN22}` }).default(false),
  in_channels: positiveInt.default(3),
  out_channels: positiveInt.default(3),
  patch_size: z.null({ error: `patch_size other than null ${WAN22}` }).default(null),
  // WanPipeline sizes its latents with these; null would fail there.
  scale_factor_temporal: positiveInt.default(4),
  scale_factor_spatial: positiveInt.default(8),
}).check((ctx) => {
  const c = ctx.value;
  const problem = (message: string, path: string) =>
    ctx.issues.push({ code: "custom", message, path: [path], input: c });
  if (c.temperal_downsample.length !== c.dim_mult.length - 1) {
    problem(
      `must have one entry per dim_mult level but the last (${c.dim_mult.length - 1}), ` +
        `has ${c.temperal_downsample.length}`,
      "temperal_downsample",
    );
  }
  for (const name of ["latents_mean", "latents_std"] as const) {
    if (c[name].length !== c.z_dim) {
      problem(`must have z_dim = ${c.z_dim} entries, has ${c[name].length}`, name);
    }
  }
  const top = decoderDims(c)[0];
  if (top % 4 !== 0 || top > MAX_HEAD_DIM) {
    problem(
      `(decoder_base_dim or base_dim) * dim_mult[-1] = ${top}, the mid block's single attention head, must be ` +
        `a multiple of 4 up to ${MAX_HEAD_DIM}`,
      c.decoder_base_dim === null ? "base_dim" : "decoder_base_dim",
    );
  }
});

export type WanVaeConfig = z.infer<typeof wanVaeConfigSchema>;

type DimsConfig = Pick<WanVaeConfig, "base_dim" | "decoder_base_dim" | "dim_mult">;

/** The decoder's widths: the mid block's, then each up block's output (diffusers' WanDecoder3d dims). */
export function decoderDims(c: DimsConfig): number[] {
  const dim = c.decoder_base_dim ?? c.base_dim;
  return [c.dim_mult[c.dim_mult.length - 1], ...[...c.dim_mult].reverse()].map((m) => dim * m);
}

export interface UpBlockPlan {
  /** Channels into the block's first resnet and out of every resnet. */
  inChannels: number;
  outChannels: number;
  /** What follows the resnets: x2 spatially (then to outChannels / 2), and x2 in time too for "3d". */
  upsample: "2d" | "3d" | null;
}

/** Up block i of Wan2.1's decoder; the temporal flags are temperal_downsample reversed. */
export function upBlocks(c: WanVaeConfig): UpBlockPlan[] {
  const dims = decoderDims(c);
  const temporal = [...c.temperal_downsample].reverse();
  return c.dim_mult.map((_, i) => ({
    // Each upsampler halves the channels (Wan2.1's upsample_out_dim = dim / 2).
    inChannels: i === 0 ? dims[0] : Math.floor(dims[i] / 2),
    outChannels: dims[i + 1],
    upsample: i === c.dim_mult.length - 1 ? null : temporal[i] ? "3d" : "2d",
  }));
}

/**
 * What the architecture does to a latent video (the config's scale_factor_* may say otherwise; diffusers uses
 * them only to size latents): x `spatial` per side, and 1 + (F - 1) * `temporal` frames from F latent frames.
 */
export function wanVaeScale(c: WanVaeConfig): { spatial: number; temporal: number } {
  const ups = upBlocks(c).map((b) => b.upsample);
  return {
    spatial: 2 ** ups.filter((u) => u !== null).length,
    temporal: 2 ** ups.filter((u) => u === "3d").length,
  };
}
