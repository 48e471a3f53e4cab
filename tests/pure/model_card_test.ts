// What a model directory is, from its JSON files alone, and every way one can be wrong: each error names the
// file (and the field) at fault.
import assert from "node:assert/strict";
import { parsePythonJson } from "../../src/model/component_config.ts";
import { WeightsError } from "../../src/model/safetensors.ts";
import { latentShape, readModelCard } from "../../src/pipeline/model_card.ts";
import { RequestError, resolveRequest } from "../../src/pipeline/request.ts";
import { vaeScale } from "../../src/model/vae/config.ts";
import { copyTree, withTempDir } from "../support/temp.ts";

const FIXTURE = "tests/fixtures/diffusers/dit-pipeline";
const named = (pattern: RegExp) => (e: unknown) => e instanceof WeightsError && pattern.test(e.message);

Deno.test("Python's JSON: bare -Infinity, Infinity and NaN become numbers, strings stay as written", () => {
  const value = parsePythonJson('{"lambda_min_clipped": -Infinity, "s": "NaN or Infinity", "a": [NaN, 1]}');
  assert.deepEqual(value, { lambda_min_clipped: -Infinity, s: "NaN or Infinity", a: [NaN, 1] });
});

Deno.test("a DiTPipeline card: 1000 classes named by id2label, 16x16 images, the transformer's blocks", async () => {
  const card = await readModelCard(FIXTURE);
  assert.equal(card.pipeline, "DiTPipeline");
  assert.equal(card.classes.names.length, 1000);
  assert.equal(card.classes.names[207], "golden retriever");
  assert.deepEqual(card.classes.aliases[3], ["class 3", "thing 3", "3"]);
  assert.equal(card.classes.nullClass, 1000);
  assert.deepEqual(card.size, { width: 16, height: 16 });
  assert.deepEqual(latentShape(card, card.size), [4, 8, 8]);
  assert.equal(card.blocks, 2);
  const request = resolveRequest(card, {
    labels: ["Otter", 5, "thing 9"],
    seed: 1,
    shift: 1,
    eta: 0,
    cache: "fbcache",
  });
  assert.deepEqual(request.labels, [360, 5, 9]);
  assert.equal(request.steps, 50);
  assert.equal(request.guidance, 4);
  assert.throws(
    () => resolveRequest(card, { labels: ["unicorn"], seed: 0, shift: 1, eta: 0, cache: "none" }),
    (e: unknown) =>
      e instanceof RequestError && e.field === "label" &&
      /class id in 0..999 or one of its names/.test(e.message),
  );
  assert.throws(
    () => resolveRequest(card, { labels: [1], size: "512x512", seed: 0, shift: 1, eta: 0, cache: "none" }),
    (e: unknown) =>
      e instanceof RequestError && e.field === "size" &&
      /draws 16x16 images only; allowed sizes: 16x16/.test(e.message),
  );
});

Deno.test("bad model directories are named with the file at fault, before any weights are read", () =>
  withTempDir(async (root) => {
    await assert.rejects(readModelCard(`${root}/absent`), named(/absent: directory not found$/));
    await Deno.mkdir(`${root}/empty`);
    await assert.rejects(
      readModelCard(`${root}/empty`),
      named(/not a diffusers model directory: no model_index.json or config.json/),
    );
    const dir = `${root}/dit`;
    await copyTree(FIXTURE, dir);
    const index = JSON.parse(await Deno.readTextFile(`${dir}/model_index.json`));
    await Deno.writeTextFile(
      `${dir}/model_index.json`,
      JSON.stringify({ ...index, _class_name: "FluxKontextPipeline" }),
    );
    await assert.rejects(
      readModelCard(dir),
      named(
        /_class_name "FluxKontextPipeline" is not supported; supported: DiTPipeline, FluxPipeline, MnistDiT/,
      ),
    );
    await Deno.writeTextFile(`${dir}/model_index.json`, JSON.stringify({ ...index, vae: [null, null] }));
    await assert.rejects(readModelCard(dir), named(/model_index.json: the pipeline needs a "vae" component/));
    await Deno.writeTextFile(`${dir}/model_index.json`, JSON.stringify(index));
    await Deno.remove(`${dir}/scheduler/scheduler_config.json`);
    await assert.rejects(readModelCard(dir), named(/scheduler\/scheduler_config.json: file not found/));
    await copyTree(`${FIXTURE}/scheduler`, `${dir}/scheduler`);
    const transformer = JSON.parse(await Deno.readTextFile(`${dir}/transformer/config.json`));
    await Deno.writeTextFile(
      `${dir}/transformer/config.json`,
      JSON.stringify({ ...transformer, patch_size: 3 }),
    );
    await assert.rejects(
      readModelCard(dir),
      named(/transformer\/config.json: patch_size: must divide sample_size 8/),
    );
    await Deno.writeTextFile(
      `${dir}/transformer/config.json`,
      JSON.stringify({ ...transformer, activation_fn: "geglu" }),
    );
    await assert.rejects(
      readModelCard(dir),
      named(/activation_fn: activation_fn must be "gelu-approximate"/),
    );
  }));

Deno.test("a FluxPipeline card: the _ditserve section pins size, default steps and description; T5 length follows tokenizer_2", async () => {
  const card = await readModelCard("weights/mnist-flux");
  assert.equal(card.pipeline, "FluxPipeline");
  assert.deepEqual(card.size, { width: 32, height: 32 });
  assert.equal(card.sizes, null);
  assert.equal(card.defaults.steps, 20);
  assert.match(card.description!, /MNIST handwritten digits only/);
  assert.equal(card.text!.maxSequenceLength, 32, "tokenizer_2's model_max_length, under schnell's 256");
  // Without the section, a FluxPipeline draws diffusers' default size and any size within the shift's range.
  const open = await readModelCard("tests/fixtures/flux/pipeline-text");
  assert.equal(open.description, null);
  assert.ok(open.sizes !== null);
  assert.equal(open.pipeline, "FluxPipeline");
  if (open.pipeline === "FluxPipeline") assert.equal(open.size.width, 128 * vaeScale(open.vae));
});

Deno.test("a bad _ditserve section is named with its field", () =>
  withTempDir(async (root) => {
    const dir = `${root}/flux`;
    await copyTree("weights/mnist-flux", dir);
    const index = JSON.parse(await Deno.readTextFile(`${dir}/model_index.json`));
    const write = (section: unknown) =>
      Deno.writeTextFile(`${dir}/model_index.json`, JSON.stringify({ ...index, _ditserve: section }));
    await write({ size: "32" });
    await assert.rejects(readModelCard(dir), named(/model_index.json: _ditserve: size: must be "WxH"/));
    await write({ size: "36x32" });
    await assert.rejects(
      readModelCard(dir),
      named(/_ditserve.size 36x32 must have both sides multiples of 8/),
    );
    await write({ size: "64x64" });
    await assert.rejects(readModelCard(dir), named(/64x64 .* at most 1024 pixels/));
    await write({ steps: 0 });
    await assert.rejects(readModelCard(dir), named(/_ditserve: steps: /));
    await write({ colour: "red" });
    await assert.rejects(readModelCard(dir), named(/_ditserve: .*colour/));
  }));
