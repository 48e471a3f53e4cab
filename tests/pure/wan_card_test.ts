// A WanPipeline directory read from its JSON files alone: what the card says (separate CFG passes, the video
// defaults, the latent layout), what a request against it resolves to, and every refusal naming its file and
// field.
import assert from "node:assert/strict";
import { WeightsError } from "../../src/model/safetensors.ts";
import { readModelCard, wanLatentShape } from "../../src/pipeline/model_card.ts";
import { RequestError, resolveRequest } from "../../src/pipeline/request.ts";
import { copyTree, withTempDir } from "../support/temp.ts";
import { wanTextPipeline } from "../support/wan_text_pipeline.ts";

const FIXTURE = "tests/fixtures/wan/pipeline";
const named = (pattern: RegExp) => (e: unknown) => e instanceof WeightsError && pattern.test(e.message);
const refused = (field: string, pattern: RegExp) => (e: unknown) =>
  e instanceof RequestError && e.field === field && pattern.test(e.message);

async function edited(dir: string, file: string, change: (json: Record<string, unknown>) => void) {
  await copyTree(FIXTURE, `${dir}/wan`);
  const path = `${dir}/wan/${file}`;
  const json = JSON.parse(await Deno.readTextFile(path));
  change(json);
  await Deno.writeTextFile(path, JSON.stringify(json));
  return `${dir}/wan`;
}

Deno.test("a WanPipeline card: separate CFG passes, Wan's defaults, the transformer's blocks", async () => {
  const card = await readModelCard(FIXTURE);
  assert.equal(card.pipeline, "WanPipeline");
  if (card.pipeline !== "WanPipeline") return;
  assert.equal(card.cfgPasses, "separate");
  assert.deepEqual(card.video, { frames: 81, fps: 16, framesPerLatent: 4 });
  assert.deepEqual(card.size, { width: 832, height: 480 });
  assert.deepEqual(card.defaults, { steps: 50, guidance: 5 });
  assert.equal(card.blocks, 4);
  assert.equal(card.text.encoders, null);
  assert.deepEqual(card.text.absent, ["text_encoder", "tokenizer"]);
  assert.deepEqual(card.samplers, ["default", "UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"]);
  // 9 frames at 48x32: (9 - 1) / 4 + 1 latent frames of 6x4 (the VAE's x8).
  assert.deepEqual(wanLatentShape(card, { width: 48, height: 32 }, 9), [4, 3, 4, 6]);
});

Deno.test("a Wan request: guidance above 1 runs CFG against the negative prompt, true_cfg is refused", async () => {
  await withTempDir(async (dir) => {
    const card = await readModelCard(await wanTextPipeline(dir));
    const base = { prompts: ["a cat"], seed: 0, shift: 1, eta: 0, cache: "fbcache" };
    const request = resolveRequest(card, { ...base, negativePrompt: "blurry" });
    assert.equal(request.negativePrompt, "blurry");
    assert.equal(request.trueCfg, false);
    assert.ok(request.cache.strategy === "fbcache" && request.cache.cfg.separate);
    assert.throws(
      () => resolveRequest(card, { ...base, guidance: 1, negativePrompt: "blurry" }),
      refused("negative_prompt", /only with classifier-free guidance: set guidance above 1/),
    );
    assert.throws(
      () => resolveRequest(card, { ...base, true_cfg: 3 }),
      refused("true_cfg", /guidance above 1/),
    );
    assert.throws(
      () => resolveRequest(card, { ...base, cache: { strategy: "dbcache", enable_separate_cfg: false } }),
      refused("cache", /enable_separate_cfg false is not supported by WanPipeline/),
    );
  });
});

Deno.test("Wan embeddings without a text encoder: guidance needs negative_prompt_embeds", async () => {
  const card = await readModelCard(FIXTURE);
  const base = { seed: 0, shift: 1, eta: 0, cache: "none" };
  assert.throws(
    () => resolveRequest(card, { ...base, embeddings: { images: 1, negative: false } }),
    refused("negative_prompt_embeds", /no text encoder to encode the empty negative prompt/),
  );
  assert.throws(
    () => resolveRequest(card, { ...base, prompts: ["a cat"] }),
    refused("prompt", /takes precomputed prompt_embeds only: model_index.json saves text_encoder, tokenizer/),
  );
});

Deno.test("a WanPipeline directory: Wan2.2, other schedulers and mismatched widths are refused by name", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, (j: Record<string, unknown>) => void, RegExp][] = [
      ["model_index.json", (j) => (j.boundary_ratio = 0.875), /boundary_ratio .*Wan2\.2.* not supported/],
      [
        "model_index.json",
        (j) => (j.expand_timesteps = true),
        /expand_timesteps true .* not supported; allowed: false/,
      ],
      [
        "scheduler/scheduler_config.json",
        (j) => (j._class_name = "DDIMScheduler"),
        /"DDIMScheduler" is not supported by WanPipeline; supported: UniPCMultistepScheduler, FlowMatchEuler/,
      ],
      [
        "vae/config.json",
        (j) => (j.z_dim = 8, j.latents_mean = new Array(8).fill(0), j.latents_std = new Array(8).fill(1)),
        /in_channels 4 must equal the VAE's z_dim 8/,
      ],
      [
        "vae/config.json",
        (j) => (j.scale_factor_temporal = 2),
        /vae\/config.json: scale_factor_temporal 2 differs from what its up blocks do \(4\)/,
      ],
    ];
    for (const [i, [file, change, pattern]] of cases.entries()) {
      const path = await edited(`${dir}/${i}`, file, change);
      await assert.rejects(readModelCard(path), named(pattern), `${file}: ${pattern}`);
    }
  });
});
