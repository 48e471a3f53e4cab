// config.json of diffusers' AutoencoderKL (SD, SDXL, DiT, FLUX and most image models share it), with
// diffusers' defaults. Only the decoder runs here, so only what it depends on is checked strictly.
import { z } from "zod";

const positiveInt = z.number().int().positive();

export const autoencoderKlConfigSchema = z.looseObject({
  _class_name: z.literal("AutoencoderKL"),
  in_channels: positiveInt.default(3),
  out_channels: positiveInt.default(3),
  up_block_types: z.array(
    z.literal("UpDecoderBlock2D", { error: 'up_block_types must all be "UpDecoderBlock2D"' }),
  )
    .min(1).default(["UpDecoderBlock2D"]),
  block_out_channels: z.array(positiveInt).min(1).default([64]),
  layers_per_block: positiveInt.default(1),
  act_fn: z.literal("silu", { error: 'act_fn must be "silu"' }).default("silu"),
  latent_channels: positiveInt.default(4),
  norm_num_groups: positiveInt.default(32),
  sample_size: positiveInt.default(32),
  scaling_factor: z.number().positive().default(0.18215),
  shift_factor: z.number().nullable().default(null),
  use_post_quant_conv: z.boolean().default(true),
  mid_block_add_attention: z.boolean().default(true),
}).check((ctx) => {
  const c = ctx.value;
  const problem = (message: string, path: string) =>
    ctx.issues.push({ code: "custom", message, path: [path], input: c });
  if (c.up_block_types.length !== c.block_out_channels.length) {
    problem(
      `must list one type per block_out_channels entry (${c.block_out_channels.length})`,
      "up_block_types",
    );
  }
  const bad = c.block_out_channels.find((n) => n % c.norm_num_groups !== 0);
  if (bad !== undefined) {
    problem(
      `${c.norm_num_groups} groups must divide every block_out_channels entry (${bad})`,
      "norm_num_groups",
    );
  }
});

export type AutoencoderKlConfig = z.infer<typeof autoencoderKlConfigSchema>;

/** Pixels per latent pixel: 2 per up block with an upsampler (all but the last). */
export function vaeScale(c: AutoencoderKlConfig): number {
  return 2 ** (c.block_out_channels.length - 1);
}
