// The Wan transformer's config.json schema (diffusers' defaults, what text-to-video Wan2.1 does not use refused
// by name) and the graph plan: token grid, per-binding size checks and feed-forward row chunks at real sizes.
import assert from "node:assert/strict";
import { parseConfig } from "../../src/model/component_config.ts";
import { WeightsError } from "../../src/model/safetensors.ts";
import {
  wanDims,
  type WanTransformerConfig,
  wanTransformerConfigSchema,
} from "../../src/model/wan/config.ts";
import { planWanGraph, WanShapeError } from "../../src/model/wan/graph_plan.ts";

// transformer/config.json of Wan-AI/Wan2.1-T2V-1.3B-Diffusers and -14B-Diffusers (their non-default fields).
const T2V_1_3B = {
  _class_name: "WanTransformer3DModel",
  _diffusers_version: "0.33.0.dev0",
  added_kv_proj_dim: null,
  attention_head_dim: 128,
  cross_attn_norm: true,
  eps: 1e-6,
  ffn_dim: 8960,
  freq_dim: 256,
  image_dim: null,
  in_channels: 16,
  num_attention_heads: 12,
  num_layers: 30,
  out_channels: 16,
  patch_size: [1, 2, 2],
  qk_norm: "rms_norm_across_heads",
  rope_max_seq_len: 1024,
  text_dim: 4096,
};
const T2V_14B = { ...T2V_1_3B, ffn_dim: 13824, num_attention_heads: 40, num_layers: 40 };

const parse = (json: unknown): WanTransformerConfig =>
  parseConfig("transformer/config.json", json, wanTransformerConfigSchema);

function refuses(json: unknown, pattern: RegExp): void {
  assert.throws(
    () => parse(json),
    (e) =>
      e instanceof WeightsError && e.message.startsWith("transformer/config.json: ") &&
      pattern.test(e.message),
    `expected ${pattern}`,
  );
}

Deno.test("wan config: the published 1.3B and 14B configs parse; a bare one gets diffusers' defaults", () => {
  const small = parse(T2V_1_3B);
  assert.deepEqual(wanDims(small), { inner: 1536, outChannels: 16, patchVolume: 4, ropeAxes: [44, 42, 42] });
  assert.equal(wanDims(parse(T2V_14B)).inner, 5120);
  const bare = parse({ _class_name: "WanTransformer3DModel" });
  assert.deepEqual(
    [bare.num_attention_heads, bare.attention_head_dim, bare.text_dim, bare.ffn_dim, bare.num_layers],
    [40, 128, 4096, 13824, 40],
  );
  assert.deepEqual(bare.patch_size, [1, 2, 2]);
  assert.equal(bare.cross_attn_norm, true);
  assert.equal(bare.eps, 1e-6);
  assert.equal(bare.rope_max_seq_len, 1024);
  // out_channels null means in_channels, as in diffusers.
  assert.equal(wanDims(parse({ ...T2V_1_3B, out_channels: null, in_channels: 12 })).outChannels, 12);
  // WanRotaryPosEmbed: rows and columns 2 * (d // 6), frames the rest.
  assert.deepEqual(wanDims(parse({ ...T2V_1_3B, attention_head_dim: 16 })).ropeAxes, [8, 4, 4]);
  assert.deepEqual(wanDims(parse({ ...T2V_1_3B, attention_head_dim: 24 })).ropeAxes, [8, 8, 8]);
});

Deno.test("wan config: image-to-video, other qk norms, patch sizes and head dims are refused by name", () => {
  refuses(
    { ...T2V_14B, image_dim: 1280 },
    /image_dim: the image-to-video CLIP image embedder is not implemented.*allowed: null/,
  );
  refuses({ ...T2V_14B, added_kv_proj_dim: 5120 }, /added_kv_proj_dim: .*not implemented.*allowed: null/);
  refuses({ ...T2V_14B, pos_embed_seq_len: 514 }, /pos_embed_seq_len: .*allowed: null/);
  refuses({ ...T2V_14B, qk_norm: "rms_norm" }, /qk_norm: must be "rms_norm_across_heads"/);
  refuses({ ...T2V_14B, qk_norm: null }, /qk_norm: /);
  refuses({ ...T2V_14B, patch_size: [1, 4, 4] }, /patch_size: must be \[1, 2, 2\]/);
  refuses({ ...T2V_14B, patch_size: [2, 2, 2] }, /patch_size: must be \[1, 2, 2\]/);
  refuses({ ...T2V_14B, attention_head_dim: 30 }, /attention_head_dim: must be a multiple of 4 in 4\.\.512/);
  refuses({ ...T2V_14B, _class_name: "WanVACETransformer3DModel" }, /_class_name: /);
  refuses({ ...T2V_14B, num_layers: -1 }, /num_layers: /);
});

const GIB = 1024 ** 3;
const limits = (bytes: number) => ({ maxStorageBufferBindingSize: bytes, maxBufferSize: bytes });
// 480p, 81 frames: latents of (81 - 1) / 4 + 1 = 21 frames, 480 / 8 x 832 / 8; 512 T5 tokens.
const VIDEO_480P = { batch: 1, frames: 21, height: 60, width: 104, textTokens: 512 };

Deno.test("wan graph plan: 480p x 81 frames is 32,760 tokens; the feed-forward is chunked only past the limit", () => {
  const big = parse(T2V_14B);
  const whole = planWanGraph(big, VIDEO_480P, limits(2 * GIB - 1));
  assert.deepEqual(whole, { grid: [21, 30, 52], tokens: 32760, ffnChunkRows: 32760 });
  // Batch 2 at 14B: the [65520, 13824] hidden (3.6 GB) runs per sample, 1.8 GB each.
  assert.equal(planWanGraph(big, { ...VIDEO_480P, batch: 2 }, limits(2 * GIB - 1)).ffnChunkRows, 32760);
  // 1.3B under a 1 GiB binding: [32760, 8960] f32 is 1.17 GB; 16,380 rows (a divisor) are 587 MB.
  const small = parse(T2V_1_3B);
  assert.equal(planWanGraph(small, VIDEO_480P, limits(GIB)).ffnChunkRows, 16380);
  // The most rows that fit when they must divide the tokens: 1560 tokens (one frame), 600 rows fit.
  const frame = { ...VIDEO_480P, frames: 1 };
  assert.equal(planWanGraph(small, frame, limits(600 * 8960 * 4)).ffnChunkRows, 520);
});

Deno.test("wan graph plan: odd latent sizes, grids past rope_max_seq_len and tensors over the limit are refused", () => {
  const small = parse(T2V_1_3B);
  const rejects = (run: () => unknown, pattern: RegExp) =>
    assert.throws(run, (e) => e instanceof WanShapeError && pattern.test(e.message), `expected ${pattern}`);
  rejects(
    () => planWanGraph(small, { ...VIDEO_480P, height: 61 }, limits(2 * GIB)),
    /latent height 61 and width 104 must be multiples of the patch 2x2/,
  );
  rejects(
    () => planWanGraph(small, { ...VIDEO_480P, batch: 0 }, limits(2 * GIB)),
    /batch 0 must be a positive/,
  );
  rejects(
    () => planWanGraph(parse({ ...T2V_1_3B, rope_max_seq_len: 32 }), VIDEO_480P, limits(2 * GIB)),
    /token grid \[21, 30, 52\] .* exceeds rope_max_seq_len 32/,
  );
  // WebGPU's default 128 MiB binding (llvmpipe's): one [32760, 1536] f32 tensor is 201 MB.
  rejects(
    () => planWanGraph(small, VIDEO_480P, limits(128 * 1024 ** 2)),
    /hidden .*\[1, 32760, 1536\] f32 needs 201277440 bytes, over the adapter's maxStorageBufferBindingSize \/ maxBufferSize 134217728/,
  );
  // 4099 tokens (a prime) whose hidden cannot be split into at most 4096 chunks of one limit.
  const prime = { batch: 1, frames: 1, height: 2 * 4099, width: 2, textTokens: 8 };
  const wide = parse({ ...T2V_1_3B, rope_max_seq_len: 8192 });
  rejects(() => planWanGraph(wide, prime, limits(4098 * 8960 * 4)), /no chunk of rows .* 4099 tokens/);
});
