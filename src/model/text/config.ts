// config.json of transformers' CLIPTextModel (CLIPTextConfig) and T5EncoderModel (T5Config), with
// transformers' defaults for absent fields. Only what the engine computes is accepted: another activation,
// feed-forward, model type or an unpoolable eos_token_id is an error naming the field. Fields that change
// nothing at inference (dropout, initializer ranges, projection_dim, decoder settings) pass unchecked.
import { z } from "zod";

const positiveInt = z.number().int().positive();
/** Attention reads heads as vec4 (src/ops/attention.ts). */
const VEC4 = 4;

export const clipTextConfigSchema = z.looseObject({
  model_type: z.literal("clip_text_model", {
    error: 'model_type must be "clip_text_model" (a CLIPConfig nests it under text_config)',
  }).optional(),
  vocab_size: positiveInt.default(49408),
  hidden_size: positiveInt.default(512),
  intermediate_size: positiveInt.default(2048),
  num_hidden_layers: positiveInt.default(12),
  num_attention_heads: positiveInt.default(8),
  max_position_embeddings: positiveInt.default(77),
  hidden_act: z.enum(["quick_gelu", "gelu"], {
    error: 'hidden_act must be "quick_gelu" (CLIP-L) or "gelu" (the erf GELU)',
  }).default("quick_gelu"),
  layer_norm_eps: z.number().positive().default(1e-5),
  // 2 selects transformers' legacy pooling (the row of the highest id), any other id its first occurrence.
  eos_token_id: z.number({
    error: "eos_token_id must be one integer: it chooses the pooled row",
  }).int().nonnegative().default(49407),
}).check((ctx) => {
  const c = ctx.value;
  const headDim = c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim) || headDim % VEC4 !== 0) {
    ctx.issues.push({
      code: "custom",
      message: `hidden_size ${c.hidden_size} / num_attention_heads ${c.num_attention_heads} must be a ` +
        "whole head dim that is a multiple of 4 (vec4 attention)",
      path: ["hidden_size"],
      input: c,
    });
  }
});

export type ClipTextConfig = z.infer<typeof clipTextConfigSchema>;

export const t5ConfigSchema = z.looseObject({
  model_type: z.literal("t5", { error: 'model_type must be "t5" (UMT5 and others are not computed)' })
    .optional(),
  vocab_size: positiveInt.default(32128),
  d_model: positiveInt.default(512),
  d_kv: positiveInt.multipleOf(VEC4, { error: "d_kv must be a multiple of 4 (vec4 attention)" }).default(64),
  d_ff: positiveInt.default(2048),
  num_layers: positiveInt.default(6),
  num_heads: positiveInt.default(8),
  relative_attention_num_buckets: positiveInt.min(4, {
    error: "relative_attention_num_buckets must be >= 4: each direction's exact half needs a bucket",
  }).default(32),
  relative_attention_max_distance: positiveInt.default(128),
  layer_norm_epsilon: z.number().positive().default(1e-6),
  // transformers' default is "relu" (the original T5), which FLUX's T5 v1.1 does not use.
  feed_forward_proj: z.literal("gated-gelu", {
    error: 'feed_forward_proj must be "gated-gelu" (T5 v1.1; the default "relu" is not computed)',
  }),
  is_decoder: z.literal(false, { error: "is_decoder must be false: the encoder stack is bidirectional" })
    .default(false),
}).check((ctx) => {
  const c = ctx.value;
  const maxExact = relativeBucketsOf(c).maxExact;
  if (c.relative_attention_max_distance <= maxExact) {
    ctx.issues.push({
      code: "custom",
      message: `must exceed the ${maxExact} exactly bucketed distances`,
      path: ["relative_attention_max_distance"],
      input: c,
    });
  }
});

export type T5Config = z.infer<typeof t5ConfigSchema>;

/** Bidirectional bucketing: half the buckets per direction, the first half of those exact distances. */
export function relativeBucketsOf(c: Pick<T5Config, "relative_attention_num_buckets">) {
  const perDirection = Math.floor(c.relative_attention_num_buckets / 2);
  return { perDirection, maxExact: Math.floor(perDirection / 2) };
}
