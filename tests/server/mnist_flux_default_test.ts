// The server as `deno task serve` starts it, with no settings: the embedded text-to-image mnist-flux is the
// default model, so a bare OpenAI images request with a free-text prompt is drawn through the FLUX path
// (CLIP, T5, two-stream transformer, VAE) and read back by the digit classifier; /v1/models says what the
// model was trained on; an empty prompt, another size and an over-long prompt get what the API promises.
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { createApp } from "../../src/server/app.ts";
import { DEFAULT_SERVER_OPTIONS } from "../../src/server/options.ts";
import { createServices } from "../../src/server/services.ts";
import { fromBase64, jsonPost, readDigits, serverTest } from "./support/http.ts";

const services = await createServices(DEFAULT_SERVER_OPTIONS);
const app = createApp(services.deps);
const images = (body: unknown) => app.request("/v1/images/generations", jsonPost(body));

async function onePng(res: Response): Promise<{ png: Uint8Array; body: Record<string, unknown> }> {
  assert.equal(res.status, 200, await res.clone().text());
  const body = await res.json();
  assert.equal(body.data.length, 1);
  return { png: fromBase64(body.data[0].b64_json), body };
}

serverTest("mnist-flux is the default model; /v1/models says it draws digits only, at 32x32", async () => {
  await services.worker.ready();
  const ready = await (await app.request("/ready")).json();
  assert.equal(ready.model, "mnist-flux");
  const list = await (await app.request("/v1/models")).json();
  const model = list.data.find((m: { id: string }) => m.id === "mnist-flux");
  assert.equal(model.pipeline, "FluxPipeline");
  assert.match(model.description, /digits only/);
  assert.deepEqual(model.sizes, ["32x32"]);
  assert.equal(model.size_rule, null);
  assert.equal(model.max_sequence_length, 32);
  assert.equal(model.defaults.steps, 20);
  assert.ok(model.inputs.includes("prompt"));
});

serverTest('{"prompt": "a handwritten seven"} alone answers a 32x32 seven', async () => {
  const { png } = await onePng(await images({ prompt: "a handwritten seven" }));
  const image = decode(png);
  assert.deepEqual([image.width, image.height, image.channels], [32, 32, 3]);
  assert.deepEqual(await readDigits(png), [7]);
});

serverTest("a prompt that names no digit still gets an image", async () => {
  const { png } = await onePng(await images({ prompt: "a red fox in the snow", num_inference_steps: 4 }));
  assert.deepEqual([decode(png).width, decode(png).height], [32, 32]);
});

serverTest("a prompt over T5's 32 tokens is drawn truncated, with a note saying so", async () => {
  const long = Array.from({ length: 40 }, () => "seven").join(" ");
  const { body } = await onePng(await images({ prompt: long, num_inference_steps: 2 }));
  assert.ok(
    (body.notes as string[]).some((n) => /truncat/i.test(n) && /32/.test(n)),
    JSON.stringify(body.notes),
  );
});

serverTest(
  "an empty prompt and any size but 32x32 are 400s naming the field and what is allowed",
  async () => {
    const empty = await images({ prompt: "  " });
    assert.equal(empty.status, 400);
    assert.deepEqual(await empty.json(), {
      error: "prompt: is empty; give the text of the image (or precomputed prompt_embeds)",
      field: "prompt",
    });
    const size = await images({ prompt: "a seven", size: "64x64" });
    assert.equal(size.status, 400);
    const error = await size.json();
    assert.equal(error.field, "size");
    assert.match(error.error, /size: model draws 32x32 images only; allowed sizes: 32x32/);
  },
);
