// The embedded FluxPipeline weights/mnist-flux through the engine against diffusers' and transformers' own
// outputs on it (tools/mnist_flux_fixtures.py, which loads the directory with FluxPipeline.from_pretrained
// alone): both tokenizers and text encoders on four prompts (a training phrasing, a held-out one, "", and
// one past T5's 32 tokens), the prompt encoder FluxPipeline conditions on, one transformer forward stage by
// stage, the VAE decode, and 3-step pipeline runs from fixed latents with and without true CFG.
//
// Tolerances: the weights are F16, but both sides compute in f32 from the same stored values (the engine
// reads F16 matrices as stored and widens them; diffusers loads them with torch_dtype=float32), so f16
// rounding is not a source of difference: what is left is f32 summation order, exp/tanh/erf and the online
// softmax, ~1e-7 relative per op, grown by the trained weights' activations. Each bound is a few times the
// difference measured here (llvmpipe), stated where it is used, and far below what a wrong row, mask, bucket,
// chunk order or sigma moves (>= 1e-2).
import assert from "node:assert/strict";
import { submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { readJsonFile } from "../../src/model/component_config.ts";
import { FluxTransformer, imageIds } from "../../src/model/flux/transformer.ts";
import { ClipTextModel } from "../../src/model/text/clip_text_model.ts";
import { T5Encoder } from "../../src/model/text/t5_encoder.ts";
import { PromptTokenizer } from "../../src/model/text/tokenizer.ts";
import { AutoencoderKlDecoder } from "../../src/model/vae/decoder.ts";
import { toUnitHwc } from "../../src/pipeline/image.ts";
import { type FluxCard, readModelCard } from "../../src/pipeline/model_card.ts";
import { FluxPipeline } from "../../src/pipeline/pipelines/flux.ts";
import { loadPipeline } from "../../src/pipeline/pipelines/load.ts";
import { FluxPromptEncoder } from "../../src/pipeline/text/flux_prompt_encoder.ts";
import { assertClose } from "../support/assert_close.ts";
import { type Fixture, fixtureTensor, readFixture, textRunRequest } from "../support/fixtures.ts";
import { checkFluxStages } from "../support/flux_stages.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "weights/mnist-flux";
const FIXTURES = "tests/fixtures/mnist-flux";
const REGENERATE = "PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/mnist_flux_fixtures.py";

// CLIP after its final LayerNorm (|x| up to 4.3) and T5 after its RMSNorm (up to 3.2): measured at most
// 1.9e-6 (CLIP) and 1.0e-5 (T5, the 32 tokens of the truncated prompt). CLIP pooled one row late moves by
// 8.7e-2; T5 with a padding mask (FluxPipeline passes none) by 3.3.
const TEXT = { atol: 5e-5, rtol: 0 };
// The text stream grows to |x| ~ 72 through the six blocks (the image stream stays under 10), so the bound
// is relative too: measured at most 3.1e-5 there and 2.9e-6 on the image stream, norm_out and sample. The
// image ids with h and w swapped move the sample by 3.2; the timestep 0.6 read as 0.601 by 1.6e-2.
const TRANSFORMER = { atol: 1e-4, rtol: 1e-5 };
// The decoded image in [-1, 1] after three levels of GroupNorm and convolutions: measured at most 1.7e-6.
// Leaving out shift_factor moves it by 1.2e-1.
const VAE = { atol: 2e-5, rtol: 0 };
// Images in [0, 1] after 3 steps and the decode, true CFG's 3x on the difference of two predictions
// included: measured at most 7.5e-7 (plain) and 1.8e-6 (true CFG). true_cfg_scale 2.9 for 3 moves pixels by
// 2.8e-2, a fourth step by 1.7e-1.
const IMAGES = { atol: 2e-5, rtol: 0 };

/** sha256 of every file of the component directories, as the fixture script records them. */
async function weightsSha256(card: FluxCard): Promise<Record<string, string>> {
  const index = await readJsonFile(`${card.dir}/model_index.json`) as Record<string, unknown>;
  const components = Object.keys(index).filter((k) => Array.isArray(index[k]) && index[k][0] !== null);
  const sums: Record<string, string> = {};
  const walk = async (folder: string): Promise<void> => {
    for await (const entry of Deno.readDir(`${card.dir}/${folder}`)) {
      const path = `${folder}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else {
        const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(`${card.dir}/${path}`));
        sums[path] = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
      }
    }
  };
  for (const component of components) await walk(component);
  return sums;
}

let loaded: Promise<{ card: FluxCard; sums: Record<string, string> }> | undefined;

/** The card of weights/mnist-flux and the sums of its files, read once. */
function mnistFlux() {
  loaded ??= (async () => {
    const card = await readModelCard(DIR);
    if (card.pipeline !== "FluxPipeline") throw new Error(`${DIR} is a ${card.pipeline}, not a FluxPipeline`);
    return { card, sums: await weightsSha256(card) };
  })();
  return loaded;
}

/** Throws naming the fixture script's command unless `fixture` was made from the files that `sums` hash. */
function checkWeights(fixture: Fixture, path: string, sums: Record<string, string>): void {
  const recorded: Record<string, string> = JSON.parse(fixture.metadata.weights_sha256 ?? "{}");
  const differ = [...new Set([...Object.keys(sums), ...Object.keys(recorded)])]
    .filter((file) => sums[file] !== recorded[file]).sort();
  if (differ.length > 0) {
    throw new Error(
      `${path} was made from other weights than ${DIR} (differ: ${differ.join(", ")}); ` +
        `regenerate the fixtures: ${REGENERATE}`,
    );
  }
}

/** A fixture of tools/mnist_flux_fixtures.py, refused unless it was made from the weights on disk. */
async function readMnistFixture(name: string): Promise<Fixture> {
  const path = `${FIXTURES}/${name}.safetensors`;
  const fixture = await readFixture(path);
  checkWeights(fixture, path, (await mnistFlux()).sums);
  return fixture;
}

/** Row `index` of a [rows, ...] fixture tensor. */
function row(fixture: Fixture, name: string, index: number): Float32Array {
  const data = fixtureTensor(fixture, name);
  const size = data.length / fixture.tensors.get(name)!.shape[0];
  return data.subarray(index * size, (index + 1) * size);
}

async function textFixture() {
  const fixture = await readMnistFixture("text");
  const prompts: string[] = JSON.parse(fixture.metadata.prompts);
  const untruncated: [number, number][] = JSON.parse(fixture.metadata.untruncated_tokens);
  return { fixture, prompts, untruncated };
}

Deno.test("mnist-flux fixtures: one made from other weights is refused, naming the command", async () => {
  const path = `${FIXTURES}/text.safetensors`;
  const fixture = await readFixture(path);
  const { sums } = await mnistFlux();
  checkWeights(fixture, path, sums);
  const file = "transformer/diffusion_pytorch_model.safetensors";
  assert.ok(file in sums);
  const refused = (recorded: Record<string, string>, differ: string) =>
    assert.throws(
      () => checkWeights({ ...fixture, metadata: { weights_sha256: JSON.stringify(recorded) } }, path, sums),
      (e) =>
        e instanceof Error && e.message.includes(`(differ: ${differ})`) && e.message.endsWith(REGENERATE),
    );
  refused({ ...sums, [file]: "0".repeat(64) }, file);
  const { [file]: _, ...without } = sums;
  refused(without, file);
  refused(
    { ...sums, "transformer/diffusion_pytorch_model-00001-of-00002.safetensors": "0" },
    "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
  );
});

Deno.test("mnist-flux tokenizers: the engine's CLIP and T5 ids are transformers' on every prompt", async () => {
  const { card } = await mnistFlux();
  const { fixture, prompts, untruncated } = await textFixture();
  assert.equal(card.text.maxSequenceLength, Number(fixture.metadata.max_sequence_length));
  const clip = await PromptTokenizer.load(`${DIR}/tokenizer`, "clip");
  const t5 = await PromptTokenizer.load(`${DIR}/tokenizer_2`, "t5");
  for (const [i, prompt] of prompts.entries()) {
    const c = clip.encode(prompt, card.text.clipTokens);
    const t = t5.encode(prompt, card.text.maxSequenceLength);
    assert.deepEqual(
      [...c.ids],
      [...row(fixture, "clip_input_ids", i)],
      `CLIP ids of ${JSON.stringify(prompt)}`,
    );
    assert.deepEqual([...t.ids], [...row(fixture, "t5_input_ids", i)], `T5 ids of ${JSON.stringify(prompt)}`);
    assert.deepEqual([c.tokens, t.tokens], untruncated[i], `token counts of ${JSON.stringify(prompt)}`);
    assert.equal(t.truncated, t.tokens > card.text.maxSequenceLength);
  }
  assert.ok(untruncated.some(([, t]) => t > card.text.maxSequenceLength), "one prompt is truncated by T5");
});

gpuTest(
  "mnist-flux CLIPTextModel and T5EncoderModel match transformers on a batch of prompts",
  async (ctx) => {
    const { card } = await mnistFlux();
    const { fixture, prompts } = await textFixture();
    const encoders = card.text.encoders!;
    const clip = await ClipTextModel.load(ctx, `${DIR}/text_encoder`, encoders.clip);
    const t5 = await T5Encoder.load(ctx, `${DIR}/text_encoder_2`, encoders.t5);
    try {
      const clipGraph = clip.graph(prompts.length, card.text.clipTokens);
      clip.writeInputIds(clipGraph, Uint32Array.from(fixtureTensor(fixture, "clip_input_ids")));
      const t5Graph = t5.graph(prompts.length, card.text.maxSequenceLength);
      t5.writeInputIds(t5Graph, Uint32Array.from(fixtureTensor(fixture, "t5_input_ids")));
      await ctx.kernels.ready();
      for (const graph of [clipGraph, t5Graph]) {
        submitDispatches(ctx.gpu, [...graph.embeddings, ...graph.layers.flat(), ...graph.final]);
      }
      const check = async (tensor: typeof clipGraph.hidden, name: string) =>
        assertClose(await readFloats(ctx.gpu, tensor), fixtureTensor(fixture, name), TEXT, name);
      await check(clipGraph.lastHiddenState, "clip_last_hidden_state");
      await check(clipGraph.poolerOutput, "clip_pooler_output");
      await check(t5Graph.lastHiddenState, "t5_last_hidden_state");
    } finally {
      clip.release();
      t5.release();
    }
  },
);

gpuTest(
  "mnist-flux prompt encoder gives encode_prompt's embeddings and notes T5's truncation",
  async (ctx) => {
    const { card } = await mnistFlux();
    const { fixture, prompts, untruncated } = await textFixture();
    const { maxSequenceLength: limit } = card.text;
    const encoder = await FluxPromptEncoder.load(ctx, card);
    try {
      for (const [i, prompt] of prompts.entries()) {
        const what = JSON.stringify(prompt);
        const encoded = await encoder.encode(prompt);
        assert.deepEqual(encoded.promptEmbeds.shape, [1, limit, card.text.promptEmbedDim]);
        assertClose(encoded.promptEmbeds.data, row(fixture, "t5_last_hidden_state", i), TEXT, `${what}: T5`);
        assertClose(
          encoded.pooledPromptEmbeds.data,
          row(fixture, "clip_pooler_output", i),
          TEXT,
          `${what}: CLIP`,
        );
        const t5Tokens = untruncated[i][1];
        assert.deepEqual(
          encoded.notes,
          t5Tokens > limit
            ? [`prompt truncated for T5: ${t5Tokens} tokens, the limit is ${limit}; the rest was dropped`]
            : [],
          what,
        );
      }
    } finally {
      encoder.release();
    }
  },
);

gpuTest("mnist-flux FluxTransformer2DModel matches diffusers after every stage", async (ctx) => {
  const { card } = await mnistFlux();
  const fixture = await readMnistFixture("transformer-forward");
  const config = card.transformer;
  const model = await FluxTransformer.load(ctx, `${DIR}/transformer`, config);
  try {
    const textTokens = fixture.tensors.get("encoder_hidden_states")!.shape[1];
    // A square image: [1, side * side, in_channels] packed latents.
    const side = Math.sqrt(fixture.tensors.get("hidden_states")!.shape[1]);
    const graph = model.graph({ batch: 1, gridHeight: side, gridWidth: side, textTokens });
    // The positions the engine builds are the ones FluxPipeline passes (text ids all zero).
    assertClose(imageIds(side, side), fixtureTensor(fixture, "img_ids"), { atol: 0, rtol: 0 }, "img_ids");
    assert.ok(fixtureTensor(fixture, "txt_ids").every((v) => v === 0), "txt_ids are zeros");
    await checkFluxStages(ctx, graph, fixture, config.num_layers, TRANSFORMER);
  } finally {
    model.release();
  }
});

gpuTest("mnist-flux AutoencoderKL decodes FluxPipeline's mapped latents as diffusers does", async (ctx) => {
  const { card } = await mnistFlux();
  const fixture = await readMnistFixture("vae-decode");
  const { scaling_factor: scaling, shift_factor: shift } = card.vae;
  // FluxPipeline's mapping, in f32 as torch computes it.
  const mapped = fixtureTensor(fixture, "latents").map((v) => v / scaling + (shift ?? 0));
  assertClose(mapped, fixtureTensor(fixture, "z"), { atol: 1e-6, rtol: 0 }, "latents / scaling + shift");
  const vae = await AutoencoderKlDecoder.load(ctx, `${DIR}/vae`, card.vae);
  try {
    const graph = vae.graph(fixture.tensors.get("z")!.shape as [number, number, number, number]);
    ctx.pool.write(graph.z, fixtureTensor(fixture, "z"));
    await ctx.kernels.ready();
    submitDispatches(ctx.gpu, graph.commands);
    assertClose(await readFloats(ctx.gpu, graph.output), fixtureTensor(fixture, "sample"), VAE, "sample");
  } finally {
    vae.release();
  }
});

for (const name of ["plain", "true-cfg"]) {
  gpuTest(
    `mnist-flux FluxPipeline (${name}): 3 steps from fixed latents give diffusers' image`,
    async (ctx) => {
      const { card } = await mnistFlux();
      const fixture = await readMnistFixture(`pipeline-run-${name}`);
      const meta = fixture.metadata;
      assert.equal(card.text.maxSequenceLength, Number(meta.max_sequence_length));
      const request = textRunRequest(card, fixture, [meta.prompt], meta.negative_prompt ?? null);
      assert.equal(request.trueCfg, meta.negative_prompt !== undefined);
      const pipeline = await loadPipeline(ctx, card);
      assert.ok(pipeline instanceof FluxPipeline);
      try {
        const result = await pipeline.run(request, { latents: fixtureTensor(fixture, "latents") });
        assert.deepEqual(result.shape, [1, 3, Number(meta.height), Number(meta.width)]);
        assert.deepEqual(result.notes, []);
        assertClose(
          toUnitHwc(result.images, result.shape),
          fixtureTensor(fixture, "images"),
          IMAGES,
          "images",
        );
      } finally {
        pipeline.release();
      }
    },
  );
}
