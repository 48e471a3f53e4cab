// config.json of transformers' CLIPTextModel (CLIPTextConfig), T5EncoderModel (T5Config) and
// UMT5EncoderModel (UMT5Config), with transformers' defaults for absent fields. Only what the engine computes
// is accepted: another activation, feed-forward, model type, architecture or an unpoolable eos_token_id is an
// error naming the field. Fields that change nothing at inference (dropout, initializer ranges, projection_dim,
// decoder settings) pass unchecked.
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

/** transformers' defaults of the two T5 encoders: T5Config (T5 v1.1, FLUX) and UMT5Config (umT5, Wan). */
const T5_FAMILY = {
  t5: {
    architecture: "T5EncoderModel",
    defaults: { vocab_size: 32128, d_ff: 2048, num_layers: 6, num_heads: 8 },
    // transformers' default is "relu" (the original T5), which FLUX's T5 v1.1 does not use.
    feedForward: z.literal("gated-gelu", {
      error: 'feed_forward_proj must be "gated-gelu" (T5 v1.1; the default "relu" is not computed)',
    }),
  },
  umt5: {
    architecture: "UMT5EncoderModel",
    defaults: { vocab_size: 250112, d_ff: 1024, num_layers: 8, num_heads: 6 },
    feedForward: z.literal("gated-gelu", { error: 'feed_forward_proj must be "gated-gelu" (umT5\'s)' })
      .default("gated-gelu"),
  },
} as const;

type T5Family = keyof typeof T5_FAMILY;

/**
 * T5 and UMT5 compute the same encoder but for one thing: UMT5 gives every layer its own
 * relative_attention_bias table, T5 shares the first layer's (src/model/text/t5_encoder.ts). Wan's UMT5
 * config also carries scalable_attention (t5x's name for those per-layer tables; transformers reads it in
 * neither model, as T5 never and UMT5 always has them) and tie_word_embeddings (it ties an LM head, which an
 * encoder has none of; the token table is shared.weight either way): both are checked to be booleans only.
 */
function t5FamilySchema<F extends T5Family>(family: F) {
  const { architecture, defaults, feedForward } = T5_FAMILY[family];
  const others = (Object.keys(T5_FAMILY) as T5Family[]).filter((f) => f !== family);
  const architectures =
    `architectures must be ["${architecture}"]: the encoder alone (other heads' weights are not read)`;
  return z.looseObject({
    model_type: z.literal(family, {
      error: `model_type must be "${family}" (a ${others.join(", ")} config is read by its own schema)`,
    }).default(family),
    architectures: z.tuple([z.literal(architecture, { error: architectures })], { error: architectures })
      .optional(),
    vocab_size: positiveInt.default(defaults.vocab_size),
    d_model: positiveInt.default(512),
    d_kv: positiveInt.multipleOf(VEC4, { error: "d_kv must be a multiple of 4 (vec4 attention)" }).default(
      64,
    ),
    d_ff: positiveInt.default(defaults.d_ff),
    num_layers: positiveInt.default(defaults.num_layers),
    num_heads: positiveInt.default(defaults.num_heads),
    relative_attention_num_buckets: positiveInt.min(4, {
      error: "relative_attention_num_buckets must be >= 4: each direction's exact half needs a bucket",
    }).default(32),
    relative_attention_max_distance: positiveInt.default(128),
    layer_norm_epsilon: z.number().positive().default(1e-6),
    feed_forward_proj: feedForward,
    is_decoder: z.literal(false, { error: "is_decoder must be false: the encoder stack is bidirectional" })
      .default(false),
    scalable_attention: z.boolean().optional(),
    tie_word_embeddings: z.boolean().optional(),
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
}

/** config.json of T5EncoderModel (FLUX's text_encoder_2). */
export const t5ConfigSchema = t5FamilySchema("t5");
/** config.json of UMT5EncoderModel (Wan's text_encoder). */
export const umt5ConfigSchema = t5FamilySchema("umt5");

/** Either encoder's config; model_type says whether every layer has its own position bias table. */
export type T5Config = z.infer<typeof t5ConfigSchema> | z.infer<typeof umt5ConfigSchema>;

/** Bidirectional bucketing: half the buckets per direction, the first half of those exact distances. */
export function relativeBucketsOf(c: Pick<T5Config, "relative_attention_num_buckets">) {
  const perDirection = Math.floor(c.relative_attention_num_buckets / 2);
  return { perDirection, maxExact: Math.floor(perDirection / 2) };
}
