// A FluxPipeline directory with all four text components (tools/flux_fixtures.py): prompts go through the
// engine's tokenizers, CLIP and T5 and come out as the embeddings diffusers' encode_prompt gives, and the
// images from fixed latents are diffusers' pipeline(prompt=...) images: one prompt drawn twice, an
// over-long prompt batched with a short one (truncated, with a note), and true CFG against a negative prompt.
import assert from "node:assert/strict";
import { PromptTokenizer } from "../../src/model/text/tokenizer.ts";
import { toUnitHwc } from "../../src/pipeline/image.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { FluxPipeline } from "../../src/pipeline/pipelines/flux.ts";
import { loadPipeline } from "../../src/pipeline/pipelines/load.ts";
import { assertClose } from "../support/assert_close.ts";
import { type Fixture, fixtureTensor, readFixture, textRunRequest } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";
import { copyTree, withTempDir } from "../support/temp.ts";

const DIR = "tests/fixtures/flux/pipeline-text";
const RUNS = ["single", "truncated", "true-cfg"] as const;
// Outputs of 2-layer BF16-stored encoders computed in f32 on both sides, after CLIP's final LayerNorm and
// T5's final RMSNorm (|x| up to ~3): measured here (llvmpipe) at most 7e-7 for CLIP's pooled output and
// 3.3e-5 for T5's 512 x 24 states. A wrong pooled row, padding id, bucket or another prompt's pass moves
// values by >= 1e-1.
const EMBEDDINGS = { atol: 2e-4, rtol: 0 };
// Images in [0, 1] as in flux_pipeline_test.ts (same VAE, 5-block BF16-stored transformer, f32 compute):
// measured at most 5.7e-5 after 3 steps, true CFG's 4x on the difference of two predictions included.
// The negative prompt's pooled embedding swapped for the prompt's moves pixels by 0.8.
const IMAGES = { atol: 5e-4, rtol: 0 };

interface Run {
  fixture: Fixture;
  /** Distinct prompts in fixture row order, then the negative prompt of true CFG. */
  prompts: string[];
  negative: string | null;
  /** One prompt per image, as the engine's request takes them (num_images_per_prompt expanded). */
  imagePrompts: string[];
  /** Untruncated [CLIP, T5] token counts per prompt, from transformers. */
  untruncated: [number, number][];
}

async function readRun(name: (typeof RUNS)[number]): Promise<Run> {
  const fixture = await readFixture(`${DIR}-run-${name}.safetensors`);
  const meta = fixture.metadata;
  const prompts: string[] = JSON.parse(meta.prompts);
  const perPrompt = Number(meta.num_images_per_prompt);
  return {
    fixture,
    prompts,
    negative: meta.negative_prompt ?? null,
    imagePrompts: prompts.flatMap((p) => Array<string>(perPrompt).fill(p)),
    untruncated: JSON.parse(meta.untruncated_tokens),
  };
}

/** Row `index` of a [rows, ...] fixture tensor. */
function row(fixture: Fixture, name: string, index: number): Float32Array {
  const data = fixtureTensor(fixture, name);
  const size = data.length / fixture.tensors.get(name)!.shape[0];
  return data.subarray(index * size, (index + 1) * size);
}

Deno.test("pipeline-text tokenizers: the engine's ids are transformers' on every prompt", async () => {
  const clip = await PromptTokenizer.load(`${DIR}/tokenizer`, "clip");
  const t5 = await PromptTokenizer.load(`${DIR}/tokenizer_2`, "t5");
  for (const name of RUNS) {
    const run = await readRun(name);
    const meta = run.fixture.metadata;
    const cases: [string, string, number][] = run.prompts.map((p, i) => [p, "", i]);
    if (run.negative !== null) cases.push([run.negative, "negative_", 0]);
    for (const [prompt, prefix, index] of cases) {
      const what = `${name}: ${prefix}prompt ${index}`;
      const c = clip.encode(prompt, 77);
      const t = t5.encode(prompt, Number(meta.max_sequence_length));
      assert.deepEqual([...c.ids], [...row(run.fixture, `${prefix}clip_input_ids`, index)], `${what}: CLIP`);
      assert.deepEqual([...t.ids], [...row(run.fixture, `${prefix}t5_input_ids`, index)], `${what}: T5`);
      if (prefix === "") assert.deepEqual([c.tokens, t.tokens], run.untruncated[index], what);
    }
  }
});

for (const name of RUNS) {
  gpuTest(`FluxPipeline from prompts (${name}) gives diffusers' embeddings and images`, async (ctx) => {
    const run = await readRun(name);
    const { fixture } = run;
    const meta = fixture.metadata;
    const card = await readModelCard(DIR);
    const text = card.text;
    assert.ok(text?.encoders, "the card lists both text encoders");
    const t5Tokens = text.maxSequenceLength;
    assert.equal(t5Tokens, Number(meta.max_sequence_length));
    const request = textRunRequest(card, fixture, run.imagePrompts, run.negative);
    assert.equal(request.trueCfg, run.negative !== null);
    const pipeline = await loadPipeline(ctx, card);
    assert.ok(pipeline instanceof FluxPipeline);
    try {
      const result = await pipeline.run(request, {
        latents: fixtureTensor(fixture, "latents"),
        timePhases: true,
      });
      // Timed phases change nothing but the clock: the images below are still diffusers'.
      const phases = result.phases;
      assert.ok(phases && phases.encode! > 0 && phases.denoise > 0 && phases.decode > 0, "phases timed");
      assert.ok(
        Math.abs(phases.denoise + phases.decode - result.seconds) < 1e-6,
        "denoise + decode = seconds",
      );
      const encoder = await pipeline.promptEncoder();
      // One pass per distinct text: a prompt repeated within the request is encoded once, though the
      // request's prompts are encoded concurrently (and "truncated" checks that two distinct ones in flight
      // together keep their own outputs).
      const distinct = new Set([...run.imagePrompts, ...(run.negative === null ? [] : [run.negative])]);
      assert.equal(encoder.encodes, distinct.size, "encoder passes");

      const note = (model: string, tokens: number, limit: number) =>
        tokens > limit
          ? [`prompt truncated for ${model}: ${tokens} tokens, the limit is ${limit}; the rest was dropped`]
          : [];
      const truncatedNotes = run.untruncated.flatMap(([clip, t5]) => [
        ...note("CLIP", clip, 77),
        ...note("T5", t5, t5Tokens),
      ]);
      assert.equal(truncatedNotes.length, name === "truncated" ? 2 : 0);
      assert.deepEqual(result.notes, truncatedNotes);

      // The embeddings the run used (remembered: no further pass) are diffusers' encode_prompt outputs.
      const rows: [string, string, number][] = run.prompts.map((p, i) => [p, "", i]);
      if (run.negative !== null) rows.push([run.negative, "negative_", 0]);
      for (const [prompt, prefix, index] of rows) {
        const encoded = await encoder.encode(prompt);
        const what = `${name}: ${prefix}prompt ${index}`;
        assert.deepEqual(encoded.promptEmbeds.shape, [1, t5Tokens, text.promptEmbedDim]);
        assertClose(
          encoded.promptEmbeds.data,
          row(fixture, `${prefix}prompt_embeds`, index),
          EMBEDDINGS,
          `${what}: prompt_embeds`,
        );
        assertClose(
          encoded.pooledPromptEmbeds.data,
          row(fixture, `${prefix}pooled_prompt_embeds`, index),
          EMBEDDINGS,
          `${what}: pooled_prompt_embeds`,
        );
      }
      assert.equal(encoder.encodes, distinct.size, "encoder passes after asking for every prompt again");

      assert.deepEqual(result.shape, [run.imagePrompts.length, 3, Number(meta.height), Number(meta.width)]);
      assertClose(toUnitHwc(result.images, result.shape), fixtureTensor(fixture, "images"), IMAGES, "images");
    } finally {
      pipeline.release();
    }
  });
}

Deno.test("FluxPipeline card: a text component model_index.json lists but the disk lacks is named", async () => {
  for (const name of ["tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2"]) {
    await withTempDir(async (tmp) => {
      const dir = `${tmp}/model`;
      await copyTree(DIR, dir);
      await Deno.remove(`${dir}/${name}`, { recursive: true });
      await assert.rejects(
        readModelCard(dir),
        (e) =>
          e instanceof Error &&
          e.message.startsWith(`${dir}/${name}: directory not found; model_index.json lists "${name}"`),
      );
    });
  }
});
