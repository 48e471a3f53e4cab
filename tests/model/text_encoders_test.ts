// CLIPTextModel and T5EncoderModel against transformers' own forward (tools/text_encoder_fixtures.py), stage
// by stage: after the embeddings, after every layer, the final norm and last_hidden_state, CLIP's
// pooler_output and T5's position bias. clip-a: FLUX's CLIP-L in miniature (quick_gelu, legacy pooling at
// the highest id, 77 tokens, "text_model." keys, F32); clip-b: eos_token_id pooling, erf GELU, 16 tokens,
// BF16; t5-a: odd d_model, exact, logarithmic and clamped buckets, F32; t5-b: FLUX's bucketing, BF16.
import assert from "node:assert/strict";
import type { z } from "zod";
import type { GpuContext } from "../../src/gpu/context.ts";
import { submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { parseConfig, readJsonFile } from "../../src/model/component_config.ts";
import { WeightsError } from "../../src/model/safetensors.ts";
import { ClipTextModel } from "../../src/model/text/clip_text_model.ts";
import { clipTextConfigSchema, t5ConfigSchema } from "../../src/model/text/config.ts";
import { relativePositionBucket, T5Encoder } from "../../src/model/text/t5_encoder.ts";
import { type TextEncoderGraph, TextEncoderInputError } from "../../src/model/text/text_encoder.ts";
import { assertClose } from "../support/assert_close.ts";
import { type Fixture, fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const FIXTURES = "tests/fixtures/text";
// f32 on both sides from the same stored weights; summation order, exp, erfc, tanh and the online softmax
// differ by ~1e-7 relative per op, on activations of |x| < ~10. Measured max |diff| <= 1.9e-6 (CLIP) and
// <= 7.6e-6 (T5, whose unscaled scores and unnormalised residual grow larger), the embeddings and the
// position bias exact. A wrong mask, bucket, pooled row or layout is off by >= 1e-2 (gelu_tanh in place of
// the erf GELU by 5e-4).
const TOL = { atol: 1e-4, rtol: 1e-4 };

async function config<S extends z.ZodType>(name: string, schema: S): Promise<z.infer<S>> {
  const path = `${FIXTURES}/${name}/config.json`;
  return parseConfig(path, await readJsonFile(path), schema);
}

function inputIds(fixture: Fixture): { ids: Uint32Array; batch: number; length: number } {
  const [batch, length] = fixture.tensors.get("input_ids")!.shape;
  return { ids: Uint32Array.from(fixtureTensor(fixture, "input_ids")), batch, length };
}

/** Runs the graph stage by stage (its ids written), comparing `hidden` after each and the final states. */
async function compareStages(ctx: GpuContext, graph: TextEncoderGraph, fixture: Fixture): Promise<void> {
  await ctx.kernels.ready();
  const compare = async (tensor: typeof graph.hidden, stage: string) =>
    assertClose(await readFloats(ctx.gpu, tensor), fixtureTensor(fixture, stage), TOL, stage);
  submitDispatches(ctx.gpu, graph.embeddings);
  await compare(graph.hidden, "embeddings");
  for (const [k, layer] of graph.layers.entries()) {
    submitDispatches(ctx.gpu, layer);
    await compare(graph.hidden, `layers.${k}`);
  }
  submitDispatches(ctx.gpu, graph.final);
  await compare(graph.lastHiddenState, "final_layer_norm");
  await compare(graph.lastHiddenState, "last_hidden_state");
}

for (const name of ["clip-a", "clip-b"]) {
  gpuTest(`CLIPTextModel ${name} matches transformers after every stage and pools its row`, async (ctx) => {
    const model = await ClipTextModel.load(
      ctx,
      `${FIXTURES}/${name}`,
      await config(name, clipTextConfigSchema),
    );
    const fixture = await readFixture(`${FIXTURES}/${name}-forward.safetensors`);
    const { ids, batch, length } = inputIds(fixture);
    const graph = model.graph(batch, length);
    model.writeInputIds(graph, ids);
    await compareStages(ctx, graph, fixture);
    const pooled = await readFloats(ctx.gpu, graph.poolerOutput);
    assertClose(pooled, fixtureTensor(fixture, "pooler_output"), TOL, "pooler_output");
    model.release();
  });
}

for (const name of ["t5-a", "t5-b"]) {
  gpuTest(`T5EncoderModel ${name} matches transformers after every stage`, async (ctx) => {
    const model = await T5Encoder.load(ctx, `${FIXTURES}/${name}`, await config(name, t5ConfigSchema));
    const fixture = await readFixture(`${FIXTURES}/${name}-forward.safetensors`);
    const { ids, batch, length } = inputIds(fixture);
    const graph = model.graph(batch, length);
    model.writeInputIds(graph, ids);
    await compareStages(ctx, graph, fixture);
    // Gathered from block 0's stored table after the embeddings and shared by every block: exact, unless a
    // bucket is wrong.
    const bias = await readFloats(ctx.gpu, graph.positionBias);
    assertClose(bias, fixtureTensor(fixture, "position_bias"), { atol: 0, rtol: 0 }, "position_bias");
    model.release();
  });
}

// FLUX's T5-XXL bucketing, and settings where float64 would truncate a boundary distance differently.
Deno.test("T5 relative buckets match torch's float32 computation at relative positions -600..600", async () => {
  const fixture = await readFixture(`${FIXTURES}/t5-relative-buckets.safetensors`);
  const positions = fixtureTensor(fixture, "relative_position");
  const bucketings = [...fixture.tensors.keys()].filter((k) => k.startsWith("bucket."));
  assert.ok(bucketings.includes("bucket.32.128"), "FLUX's bucketing is missing");
  for (const key of bucketings) {
    const [buckets, distance] = key.split(".").slice(1).map(Number);
    const c = t5ConfigSchema.parse({
      feed_forward_proj: "gated-gelu",
      relative_attention_num_buckets: buckets,
      relative_attention_max_distance: distance,
    });
    const got = positions.map((r) => relativePositionBucket(r, c));
    assertClose(got, fixtureTensor(fixture, key), { atol: 0, rtol: 0 }, key);
  }
});

gpuTest(
  "text encoders reject ids outside the vocabulary, a wrong id count and a length past 77",
  async (ctx) => {
    const clip = await ClipTextModel.load(
      ctx,
      `${FIXTURES}/clip-a`,
      await config("clip-a", clipTextConfigSchema),
    );
    const t5 = await T5Encoder.load(ctx, `${FIXTURES}/t5-a`, await config("t5-a", t5ConfigSchema));
    const rejects = (run: () => unknown, model: string, pattern: RegExp) =>
      assert.throws(
        run,
        (e: unknown) =>
          e instanceof TextEncoderInputError && e.message.startsWith(`${model}: `) && pattern.test(e.message),
      );
    const clipGraph = clip.graph(2, 77);
    const ids = new Uint32Array(2 * 77);
    ids[77 + 3] = 211;
    rejects(
      () => clip.writeInputIds(clipGraph, ids),
      "CLIPTextModel",
      /input_ids\[1, 3\] = 211 is outside the vocabulary 0\.\.210 \(vocab_size 211\)/,
    );
    rejects(
      () => clip.writeInputIds(clipGraph, new Uint32Array(76)),
      "CLIPTextModel",
      /input_ids hold 76 ids, the graph takes \[batch 2, length 77\] = 154/,
    );
    rejects(
      () => clip.graph(1, 78),
      "CLIPTextModel",
      /sequence length 78 exceeds the position table's max_position_embeddings 77/,
    );
    rejects(() => clip.graph(0, 77), "CLIPTextModel", /batch 0 and length 77 must be positive integers/);
    const t5Graph = t5.graph(1, 5);
    rejects(
      () => t5.writeInputIds(t5Graph, Uint32Array.of(1, 2, 173, 4, 5)),
      "T5EncoderModel",
      /input_ids\[0, 2\] = 173 is outside the vocabulary 0\.\.172 \(vocab_size 173\)/,
    );
    clip.release();
    t5.release();
  },
);

Deno.test("text encoder configs refuse what is not computed, naming the field", () => {
  const refuses = (schema: z.ZodType, json: unknown, p: RegExp) =>
    assert.throws(
      () => parseConfig("config.json", json, schema),
      (e: unknown) => e instanceof WeightsError && p.test(e.message),
    );
  refuses(clipTextConfigSchema, { hidden_act: "gelu_new" }, /hidden_act: hidden_act must be "quick_gelu"/);
  refuses(clipTextConfigSchema, { model_type: "clip" }, /model_type: model_type must be "clip_text_model"/);
  refuses(clipTextConfigSchema, { eos_token_id: [2, 7] }, /eos_token_id: eos_token_id must be one integer/);
  refuses(
    clipTextConfigSchema,
    { hidden_size: 36, num_attention_heads: 4 },
    /hidden_size: hidden_size 36 \/ num_attention_heads 4 must be a whole head dim that is a multiple of 4/,
  );
  refuses(t5ConfigSchema, {}, /feed_forward_proj: feed_forward_proj must be "gated-gelu"/);
  const t5 = { feed_forward_proj: "gated-gelu" };
  refuses(t5ConfigSchema, { feed_forward_proj: "relu" }, /the default "relu" is not computed/);
  refuses(t5ConfigSchema, { ...t5, d_kv: 6 }, /d_kv: d_kv must be a multiple of 4/);
  refuses(t5ConfigSchema, { ...t5, is_decoder: true }, /is_decoder: is_decoder must be false/);
  refuses(t5ConfigSchema, { ...t5, model_type: "umt5" }, /model_type: model_type must be "t5"/);
  refuses(
    t5ConfigSchema,
    { ...t5, relative_attention_num_buckets: 8, relative_attention_max_distance: 2 },
    /relative_attention_max_distance: must exceed the 2 exactly bucketed distances/,
  );
});
