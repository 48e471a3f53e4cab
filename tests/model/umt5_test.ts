// UMT5EncoderModel against transformers' own forward with an attention mask (tools/umt5_fixtures.py), stage by
// stage for every row of a padded batch: after the embeddings, after every layer (and that layer's own
// position bias, masked past the row's tokens), the final norm and last_hidden_state. umt5-a: Wan's 32 buckets
// / max distance 128, F32; umt5-b: 8 buckets / 20 (exact, logarithmic and clamped buckets), odd d_model, BF16.
// Then WanPromptEncoder against WanPipeline.encode_prompt (diffusers) on the umT5-style tokenizer and umt5-a.
import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { parseConfig, readJsonFile } from "../../src/model/component_config.ts";
import { WeightsError } from "../../src/model/safetensors.ts";
import { t5ConfigSchema, umt5ConfigSchema } from "../../src/model/text/config.ts";
import { T5Encoder } from "../../src/model/text/t5_encoder.ts";
import { TextEncoderInputError } from "../../src/model/text/text_encoder.ts";
import { WanPromptEncoder } from "../../src/pipeline/text/wan_prompt_encoder.ts";
import { MASKED_SCORE } from "../../src/ref/relative_position_bias.ts";
import { assertClose } from "../support/assert_close.ts";
import { type Fixture, fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const FIXTURES = "tests/fixtures/wan";
// f32 on both sides from the same stored weights, as for T5 (tests/model/text_encoders_test.ts): summation
// order, tanh and the online softmax differ by ~1e-7 relative per op on activations of |x| < ~10; the
// embeddings and position biases are gathered, so exact. A wrong layer's table, bucket or mask is off by
// >= 1e-2.
const TOL = { atol: 1e-4, rtol: 1e-4 };
const EXACT = { atol: 0, rtol: 0 };

async function umt5Config(dir: string) {
  const path = `${dir}/config.json`;
  return parseConfig(path, await readJsonFile(path), umt5ConfigSchema);
}

/** Row b of a [rows, ...] fixture tensor. */
function row(fixture: Fixture, name: string, b: number): Float32Array {
  const t = fixture.tensors.get(name)!;
  const size = t.data.length / t.shape[0];
  return t.data.subarray(b * size, (b + 1) * size);
}

/** transformers' bias [1, heads, L, L] of a layer with the keys from `tokens` on masked, as the kernel writes. */
function maskedBias(fixture: Fixture, layer: number, tokens: number): Float32Array {
  const bias = Float32Array.from(fixtureTensor(fixture, `position_bias.${layer}`));
  const length = fixture.tensors.get("input_ids")!.shape[1];
  for (let r = 0; r < bias.length / length; r++) {
    bias.fill(MASKED_SCORE, r * length + tokens, (r + 1) * length);
  }
  return bias;
}

/** One row through the batch-1 graph, compared after every stage with the fixture's row b. */
async function compareRow(ctx: GpuContext, model: T5Encoder, fixture: Fixture, b: number): Promise<void> {
  const [, length] = fixture.tensors.get("input_ids")!.shape;
  const ids = Uint32Array.from(row(fixture, "input_ids", b));
  const tokens = row(fixture, "attention_mask", b).reduce((a, m) => a + m, 0);
  const graph = model.graph(1, length);
  model.writeInputIds(graph, ids, tokens);
  await ctx.kernels.ready();
  const compare = async (tensor: typeof graph.hidden, stage: string, want: Float32Array, tol = TOL) =>
    assertClose(await readFloats(ctx.gpu, tensor), want, tol, `row ${b} (${tokens} tokens) ${stage}`);
  submitDispatches(ctx.gpu, graph.embeddings);
  await compare(graph.hidden, "embeddings", row(fixture, "embeddings", b), EXACT);
  for (const [k, layer] of graph.layers.entries()) {
    submitDispatches(ctx.gpu, layer);
    await compare(graph.positionBias, `position_bias.${k}`, maskedBias(fixture, k, tokens), EXACT);
    await compare(graph.hidden, `layers.${k}`, row(fixture, `layers.${k}`, b));
  }
  submitDispatches(ctx.gpu, graph.final);
  await compare(graph.lastHiddenState, "final_layer_norm", row(fixture, "final_layer_norm", b));
  await compare(graph.lastHiddenState, "last_hidden_state", row(fixture, "last_hidden_state", b));
}

for (const name of ["umt5-a", "umt5-b"]) {
  gpuTest(
    `UMT5EncoderModel ${name} matches transformers with an attention mask, every stage`,
    async (ctx) => {
      const config = await umt5Config(`${FIXTURES}/${name}`);
      assert.equal(config.model_type, "umt5");
      const model = await T5Encoder.load(ctx, `${FIXTURES}/${name}`, config);
      const fixture = await readFixture(`${FIXTURES}/${name}-forward.safetensors`);
      const rows = fixture.tensors.get("input_ids")!.shape[0];
      for (let b = 0; b < rows; b++) await compareRow(ctx, model, fixture, b);
      model.release();
    },
  );
}

gpuTest(
  "UMT5 needs every layer's bias table: read as T5 (one shared table), the checkpoint is refused",
  async (ctx) => {
    const dir = `${FIXTURES}/umt5-a`;
    const { architectures: _, ...json } = await readJsonFile(`${dir}/config.json`) as Record<string, unknown>;
    const asT5 = parseConfig(`${dir}/config.json`, { ...json, model_type: "t5" }, t5ConfigSchema);
    await assert.rejects(
      T5Encoder.load(ctx, dir, asT5),
      (e: unknown) =>
        e instanceof WeightsError &&
        /unexpected tensors: encoder\.block\.1\.layer\.0\.SelfAttention\.relative_attention_bias\.weight/
          .test(e.message),
    );
  },
);

gpuTest("a mask needs batch 1 and a token count in 1..length", async (ctx) => {
  const dir = `${FIXTURES}/umt5-b`;
  const model = await T5Encoder.load(ctx, dir, await umt5Config(dir));
  const rejects = (run: () => unknown, pattern: RegExp) =>
    assert.throws(
      run,
      (e: unknown) =>
        e instanceof TextEncoderInputError && e.message.startsWith("UMT5EncoderModel: ") &&
        pattern.test(e.message),
    );
  const single = model.graph(1, 6);
  rejects(() => model.writeInputIds(single, new Uint32Array(6), 0), /tokens 0 must be an integer in 1\.\.6/);
  rejects(() => model.writeInputIds(single, new Uint32Array(6), 7), /tokens 7 must be an integer in 1\.\.6/);
  const pair = model.graph(2, 6);
  rejects(
    () => model.writeInputIds(pair, new Uint32Array(12), 4),
    /an attention mask \(tokens 4 < length 6\) needs a graph of batch 1, not 2/,
  );
  model.writeInputIds(pair, new Uint32Array(12));
  model.release();
});

Deno.test("the UMT5 config schema takes Wan's keys and refuses what is not computed, naming the field", async () => {
  const wan = await readJsonFile(`${FIXTURES}/umt5-a/config.json`) as Record<string, unknown>;
  assert.equal(wan.scalable_attention, true);
  assert.equal(wan.tie_word_embeddings, false);
  const refuses = (json: unknown, p: RegExp) =>
    assert.throws(
      () => parseConfig("config.json", json, umt5ConfigSchema),
      (e: unknown) => e instanceof WeightsError && p.test(e.message),
    );
  refuses({ ...wan, model_type: "t5" }, /model_type: model_type must be "umt5"/);
  refuses(
    { ...wan, architectures: ["UMT5ForConditionalGeneration"] },
    /architectures\.0: architectures must be \["UMT5EncoderModel"\]/,
  );
  refuses({ ...wan, feed_forward_proj: "relu" }, /feed_forward_proj: feed_forward_proj must be "gated-gelu"/);
  refuses({ ...wan, scalable_attention: "yes" }, /scalable_attention/);
  refuses({ ...wan, is_decoder: true }, /is_decoder: is_decoder must be false/);
  // UMT5Config's defaults, feed_forward_proj "gated-gelu" among them.
  const defaults = umt5ConfigSchema.parse({});
  assert.deepEqual(
    [defaults.model_type, defaults.vocab_size, defaults.d_ff, defaults.num_layers, defaults.num_heads],
    ["umt5", 250112, 1024, 8, 6],
  );
  assert.equal(defaults.feed_forward_proj, "gated-gelu");
  assert.throws(
    () => parseConfig("config.json", wan, t5ConfigSchema),
    /model_type: model_type must be "t5" \(a umt5 config is read by its own schema\)/,
  );
});

gpuTest(
  "WanPromptEncoder matches WanPipeline.encode_prompt, zero past each prompt, notes on truncation",
  async (ctx) => {
    const fixture = await readFixture(`${FIXTURES}/umt5-prompt-embeds.safetensors`);
    const prompts = JSON.parse(fixture.metadata.prompts) as string[];
    const negatives = JSON.parse(fixture.metadata.negative_prompts) as string[];
    const lengths = JSON.parse(fixture.metadata.max_sequence_lengths) as number[];
    const cases = (JSON.parse(await Deno.readTextFile(`${FIXTURES}/umt5-prompts.json`)) as {
      cases: { name: string; prompt: string; tokens_512: { tokens: number } }[];
    }).cases;
    const named = (name: string) => cases.find((c) => c.name === name)!;
    const text = (name: string) => named(name).prompt;
    const encoder = await WanPromptEncoder.load(ctx, `${FIXTURES}/umt5-a`, `${FIXTURES}/umt5-tokenizer`);
    for (const length of lengths) {
      for (
        const [names, key] of [[prompts, "prompt_embeds"], [negatives, "negative_prompt_embeds"]] as const
      ) {
        const { promptEmbeds, notes } = await encoder.encode(names.map(text), length);
        assert.deepEqual(promptEmbeds.shape, [names.length, length, encoder.width]);
        const want = fixtureTensor(fixture, `${key}.${length}`);
        assertClose(promptEmbeds.data, want, TOL, `${key} at ${length}`);
        // The pipeline pads with exact zeros: so must the engine, not merely small values.
        want.forEach((v, i) => v === 0 && assert.equal(promptEmbeds.data[i], 0, `${key}.${length}[${i}]`));
        const truncated = names.filter((n) => named(n).tokens_512.tokens > length);
        assert.equal(notes.length, truncated.length, `${key} at ${length}: ${notes.join("; ")}`);
        for (const note of notes) {
          assert.match(
            note,
            new RegExp(`^prompt truncated for UMT5: \\d+ tokens, the limit is ${length}`),
          );
        }
      }
    }
    assert.ok(prompts.some((n) => named(n).tokens_512.tokens > lengths[0]), "a prompt must be truncated");
    // Remembered: the same prompts again run no encoder pass.
    const passes = encoder.encodes;
    await encoder.encode(prompts.map(text), lengths[0]);
    assert.equal(encoder.encodes, passes);
    await assert.rejects(encoder.encode([], 16), RangeError);
    encoder.release();
  },
);
