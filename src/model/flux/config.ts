// config.json of diffusers' FluxTransformer2DModel (FLUX.1 dev and schnell), with diffusers' defaults.
import { z } from "zod";

const positiveInt = z.number().int().positive();

export const fluxTransformerConfigSchema = z.looseObject({
  _class_name: z.literal("FluxTransformer2DModel"),
  patch_size: z.literal(1, { error: "patch_size must be 1 (FLUX packs 2x2 latents in the pipeline)" })
    .default(1),
  in_channels: positiveInt.default(64),
  out_channels: positiveInt.nullable().default(null),
  num_layers: z.number().int().min(0).default(19),
  num_single_layers: z.number().int().min(0).default(38),
  attention_head_dim: positiveInt.default(128),
  num_attention_heads: positiveInt.default(24),
  joint_attention_dim: positiveInt.default(4096),
  pooled_projection_dim: positiveInt.default(768),
  guidance_embeds: z.boolean().default(false),
  axes_dims_rope: z.array(positiveInt).default([16, 56, 56]),
}).check((ctx) => {
  const c = ctx.value;
  const problem = (message: string, path: string) =>
    ctx.issues.push({ code: "custom", message, path: [path], input: c });
  const sum = c.axes_dims_rope.reduce((a, b) => a + b, 0);
  if (sum !== c.attention_head_dim) {
    problem(`must sum to attention_head_dim ${c.attention_head_dim}, sums to ${sum}`, "axes_dims_rope");
  }
  if (c.axes_dims_rope.some((d) => d % 2 !== 0)) {
    problem("every axis must be even (rotated pairs)", "axes_dims_rope");
  }
  if (c.attention_head_dim % 4 !== 0) {
    problem("must be a multiple of 4 (vec4 attention)", "attention_head_dim");
  }
  if ((c.out_channels ?? c.in_channels) !== c.in_channels) {
    problem("must equal in_channels: the scheduler updates the packed latents in place", "out_channels");
  }
});

export type FluxTransformerConfig = z.infer<typeof fluxTransformerConfigSchema>;

export function fluxDims(c: FluxTransformerConfig) {
  return { inner: c.num_attention_heads * c.attention_head_dim, blocks: c.num_layers + c.num_single_layers };
}
