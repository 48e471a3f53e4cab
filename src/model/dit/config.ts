// config.json of diffusers' DiTTransformer2DModel (and of the legacy Transformer2DModel name that the
// facebook/DiT-XL-2 checkpoints carry), with diffusers' defaults for absent fields. Only what the model
// computes is accepted: another activation, norm type or a cross-attention config is an error naming it.
import { z } from "zod";

const positiveInt = z.number().int().positive();

export const DIT_CLASS_NAMES = ["DiTTransformer2DModel", "Transformer2DModel"] as const;

export const ditTransformerConfigSchema = z.looseObject({
  _class_name: z.enum(DIT_CLASS_NAMES),
  num_attention_heads: positiveInt.default(16),
  attention_head_dim: positiveInt.default(72),
  in_channels: positiveInt.default(4),
  out_channels: positiveInt.nullable().default(null),
  num_layers: positiveInt.default(28),
  attention_bias: z.boolean().default(true),
  sample_size: positiveInt.default(32),
  patch_size: positiveInt.default(2),
  activation_fn: z.literal("gelu-approximate", {
    error: 'activation_fn must be "gelu-approximate" (the only one DiT checkpoints use)',
  }).default("gelu-approximate"),
  num_embeds_ada_norm: positiveInt.default(1000),
  norm_type: z.literal("ada_norm_zero", { error: 'norm_type must be "ada_norm_zero" (DiT)' }).default(
    "ada_norm_zero",
  ),
  norm_elementwise_affine: z.boolean().default(false),
  norm_eps: z.number().positive().default(1e-5),
  cross_attention_dim: z.null({ error: "cross_attention_dim must be null: DiT has no cross-attention" })
    .optional(),
  num_vector_embeds: z.null({ error: "num_vector_embeds must be null: DiT takes continuous latents" })
    .optional(),
}).check((ctx) => {
  const c = ctx.value;
  const problem = (message: string, path: string) =>
    ctx.issues.push({ code: "custom", message, path: [path], input: c });
  if (c.sample_size % c.patch_size !== 0) problem(`must divide sample_size ${c.sample_size}`, "patch_size");
  const inner = c.num_attention_heads * c.attention_head_dim;
  // The 2-D sin-cos position table splits the width in two halves of sin/cos pairs.
  if (inner % 4 !== 0) problem(`heads x head dim = ${inner} must be a multiple of 4`, "attention_head_dim");
  if (c.attention_head_dim % 4 !== 0) {
    problem("must be a multiple of 4 (vec4 attention)", "attention_head_dim");
  }
});

export type DitTransformerConfig = z.infer<typeof ditTransformerConfigSchema>;

/** Hidden width, output channels, tokens per sample. */
export function ditDims(c: DitTransformerConfig) {
  const grid = c.sample_size / c.patch_size;
  return {
    inner: c.num_attention_heads * c.attention_head_dim,
    outChannels: c.out_channels ?? c.in_channels,
    grid,
    tokens: grid * grid,
  };
}
