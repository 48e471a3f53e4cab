// The server serves any supported model directory under MODELS_DIR beside the embedded one: a DiTPipeline
// written by diffusers is listed in the OpenAI shape, draws by id2label name through both routes, refuses a
// size it cannot draw naming the sizes it can, and a broken model is answered with its problem while the
// server keeps serving.
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { createApp } from "../../src/server/app.ts";
import { DEFAULT_SERVER_OPTIONS } from "../../src/server/options.ts";
import { createServices } from "../../src/server/services.ts";
import { copyTree } from "../support/temp.ts";
import { jsonPost, serverTest } from "./support/http.ts";

const modelsDir = await Deno.makeTempDir({ prefix: "ditserve-models-" });
// Copies, not symlinks: the catalog refuses links that resolve outside MODELS_DIR.
await copyTree("weights/mnist-dit", `${modelsDir}/mnist-dit`);
await copyTree("tests/fixtures/diffusers/dit-pipeline", `${modelsDir}/dit-tiny`);
// A model whose transformer weights are cut short: its card reads, its weights do not.
await copyTree("tests/fixtures/diffusers/dit-pipeline", `${modelsDir}/dit-broken`);
const cut = `${modelsDir}/dit-broken/transformer/diffusion_pytorch_model.safetensors`;
const weights = await Deno.readFile(cut);
await Deno.writeFile(cut, weights.subarray(0, weights.length - 100));

const services = await createServices({ ...DEFAULT_SERVER_OPTIONS, modelsDir, defaultModel: "mnist-dit" });
const app = createApp(services.deps);

serverTest("GET /v1/models lists every model directory in the OpenAI list shape", async () => {
  const list = await (await app.request("/v1/models")).json();
  assert.equal(list.object, "list");
  const ids = list.data.map((m: { id: string }) => m.id);
  assert.deepEqual(ids, ["dit-broken", "dit-tiny", "mnist-dit"]);
  const dit = list.data.find((m: { id: string }) => m.id === "dit-tiny");
  assert.equal(dit.pipeline, "DiTPipeline");
  assert.deepEqual(dit.sizes, ["16x16"]);
  assert.equal(dit.classes[360], "otter");
  assert.equal(dit.blocks, 2);
  assert.deepEqual(dit.defaults, { steps: 50, guidance: 4 });
});

serverTest(
  "a DiTPipeline draws by id2label name through /v1/generate and the OpenAI images route",
  async () => {
    const png = await app.request(
      "/v1/generate",
      jsonPost({ model: "dit-tiny", label: "otter", steps: 2 }, { accept: "image/png" }),
    );
    assert.equal(png.status, 200, await png.clone().text());
    const image = decode(new Uint8Array(await png.arrayBuffer()));
    assert.deepEqual([image.width, image.height, image.channels], [16, 16, 3]);
    const openai = await app.request(
      "/v1/images/generations",
      jsonPost({ model: "dit-tiny", prompt: "golden retriever", size: "16x16", n: 2 }),
    );
    assert.equal(openai.status, 200);
    assert.equal((await openai.json()).data.length, 2);
    const size = await app.request(
      "/v1/images/generations",
      jsonPost({ model: "dit-tiny", prompt: "otter", size: "1024x1024" }),
    );
    assert.equal(size.status, 400);
    assert.deepEqual(await size.json(), {
      error: "size: model draws 16x16 images only; allowed sizes: 16x16",
      field: "size",
    });
    const unknown = await app.request(
      "/v1/images/generations",
      jsonPost({ model: "dit-tiny", prompt: "a unicorn" }),
    );
    assert.equal(unknown.status, 400);
    assert.equal((await unknown.json()).field, "prompt");
  },
);

serverTest(
  "a model whose weights do not load is answered naming the file; the next request is served",
  async () => {
    const broken = await app.request("/v1/generate", jsonPost({ model: "dit-broken", label: 1, steps: 2 }));
    assert.equal(broken.status, 500);
    assert.match(
      (await broken.json()).error,
      /dit-broken\/transformer\/diffusion_pytorch_model.safetensors: .*(truncated|file has)/,
    );
    const next = await app.request("/v1/generate", jsonPost({ model: "mnist-dit", label: 3, steps: 2 }));
    assert.equal(next.status, 200);
  },
);

serverTest("closing the services", async () => {
  services.close();
  await Deno.remove(modelsDir, { recursive: true });
});
