// config.json of diffusers' WanTransformer3DModel, with diffusers' defaults: the text-to-video path of Wan2.1
// (1.3B: 12 heads, 30 layers, ffn 8960; 14B: 40 heads, 40 layers, ffn 13824; both 128 per head). What the
// image-to-video and Wan2.2 variants add is refused by name: image_dim (the CLIP image embedder),
// added_kv_proj_dim (the image key/value projections of cross-attention) and pos_embed_seq_len.
import { z } from "zod";

const positiveInt = z.number().int().positive();

/** Refuses a feature this engine does not implement; `what` says what the field would switch on. */
const absent = (what: string) =>
  z.null({ error: `${what} is not implemented (text-to-video Wan2.1 only); allowed: null` }).default(null);

const PATCH = [1, 2, 2] as const;

export const wanTransformerConfigSchema = z.looseObject({
  _class_name: z.literal("WanTransformer3DModel"),
  patch_size: z.unknown().refine((p) => JSON.stringify(p) === JSON.stringify(PATCH), {
    error: "must be [1, 2, 2] (frames, rows, columns), the only patch size Wan2.1 uses",
  }).transform(() => PATCH).default(PATCH),
  num_attention_heads: positiveInt.default(40),
  attention_head_dim: positiveInt.default(128),
  in_channels: positiveInt.default(16),
  out_channels: positiveInt.nullable().default(16),
  text_dim: positiveInt.default(4096),
  freq_dim: z.number().int().min(2).default(256),
  ffn_dim: positiveInt.default(13824),
  num_layers: z.number().int().min(0).default(40),
  cross_attn_norm: z.boolean().default(true),
  qk_norm: z.literal("rms_norm_across_heads", {
    error: 'must be "rms_norm_across_heads" (RMSNorm over all heads of q and k, as Wan2.1 does)',
  }).default("rms_norm_across_heads"),
  eps: z.number().positive().default(1e-6),
  image_dim: absent("the image-to-video CLIP image embedder"),
  added_kv_proj_dim: absent("the image-to-video key/value projections of cross-attention"),
  pos_embed_seq_len: absent("the first-last-frame image position embedding"),
  rope_max_seq_len: positiveInt.default(1024),
}).check((ctx) => {
  const c = ctx.value;
  if (c.attention_head_dim % 4 !== 0 || c.attention_head_dim > 512) {
    ctx.issues.push({
      code: "custom",
      message: "must be a multiple of 4 in 4..512 (vec4 attention)",
      path: ["attention_head_dim"],
      input: c,
    });
  }
});

export type WanTransformerConfig = z.infer<typeof wanTransformerConfigSchema>;

export interface WanDims {
  /** num_attention_heads * attention_head_dim */
  inner: number;
  outChannels: number;
  /** Values per token of the patch embedding's input and of proj_out's output, per channel: 1 * 2 * 2. */
  patchVolume: number;
  /** WanRotaryPosEmbed's split of a head between (frames, rows, columns): rows and columns 2 * (d // 6). */
  ropeAxes: [number, number, number];
}

export function wanDims(c: WanTransformerConfig): WanDims {
  const d = c.attention_head_dim;
  const spatial = 2 * Math.floor(d / 6);
  return {
    inner: c.num_attention_heads * d,
    outChannels: c.out_channels ?? c.in_channels,
    patchVolume: c.patch_size[0] * c.patch_size[1] * c.patch_size[2],
    ropeAxes: [d - 2 * spatial, spatial, spatial],
  };
}
