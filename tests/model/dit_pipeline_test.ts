// A whole DiTPipeline directory written by diffusers' save_pretrained (tools/diffusers_fixtures.py): the same
// latents, classes, steps and guidance give the same images as diffusers' pipeline(output_type="np"), guided
// (learned-sigma channels dropped, guidance on the noise channels) and unguided; the classes resolve by
// their id2label names.
import assert from "node:assert/strict";
import { toUnitHwc } from "../../src/pipeline/image.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { loadPipeline } from "../../src/pipeline/pipelines/load.ts";
import { resolveRequest } from "../../src/pipeline/request.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const DIR = "tests/fixtures/diffusers/dit-pipeline";
// Images in [0, 1] after a 2-block transformer, 3-5 DDIM steps and the VAE, all f32 on both sides: the
// per-stage 1e-4 differences pass through the steps and the decoder. A wrong guidance split, sigma channel
// or scaling factor moves pixels by >= 1e-2.
const TOL = { atol: 5e-4, rtol: 0 };

for (const guidance of [4, 1]) {
  gpuTest(`DiTPipeline from fixed latents at guidance ${guidance} gives diffusers' images`, async (ctx) => {
    const fixture = await readFixture(`${DIR}-run-${guidance}.safetensors`);
    const card = await readModelCard(DIR);
    assert.equal(card.pipeline, "DiTPipeline");
    const pipeline = await loadPipeline(ctx, card);
    const request = resolveRequest(card, {
      labels: ["golden retriever", "otter"],
      steps: Number(fixture.metadata.num_inference_steps),
      guidance,
      seed: 0,
      shift: 1,
      eta: 0,
      cache: "none",
    });
    assert.deepEqual(request.labels, [...fixtureTensor(fixture, "class_labels")]);
    const result = await pipeline.run(request, { latents: fixtureTensor(fixture, "latents") });
    assertClose(toUnitHwc(result.images, result.shape), fixtureTensor(fixture, "images"), TOL, "images");
    pipeline.release();
  });
}
