// The shipped model end to end on WebGPU: reproducible from a seed, and drawing the digit that was asked for.
import assert from "node:assert/strict";
import { DigitClassifier } from "../../src/model/classifier.ts";
import { loadMnist, mnistRequest } from "../support/mnist.ts";
import { gpuTest } from "../support/gpu.ts";

gpuTest("same seed, same image (bit for bit); another seed, another image", async (ctx) => {
  const model = await loadMnist(ctx);
  const request = { labels: [4], steps: 4, seed: 11, guidance: 2 };
  const a = await model.run(mnistRequest(model, request));
  const b = await model.run(mnistRequest(model, request));
  const c = await model.run(mnistRequest(model, { ...request, seed: 12 }));
  assert.deepEqual(a.images, b.images);
  assert.notDeepEqual(a.images, c.images);
  model.release();
});

gpuTest(
  "generated 0, 3 and 8 (28 Euler steps, guidance 3) are read as 0, 3 and 8 by the classifier",
  async (ctx) => {
    const model = await loadMnist(ctx);
    const classifier = await DigitClassifier.load(ctx);
    const labels = [0, 3, 8];
    const result = await model.run(mnistRequest(model, { labels, steps: 28, seed: 7, guidance: 3 }));
    const { predicted } = await classifier.classify(result.images);
    assert.deepEqual(predicted, labels);
    classifier.release();
    model.release();
  },
);

gpuTest("DDIM with eta 0 gives the Euler image; with eta 1 a different, still finite one", async (ctx) => {
  const model = await loadMnist(ctx);
  const request = { labels: [1], steps: 3, seed: 2, guidance: 1.5 };
  const euler = await model.run(mnistRequest(model, request));
  const ddim = await model.run(mnistRequest(model, { ...request, sampler: "ddim", eta: 0 }));
  const noisy = await model.run(mnistRequest(model, { ...request, sampler: "ddim", eta: 1 }));
  const maxDiff = euler.images.reduce((m, v, i) => Math.max(m, Math.abs(v - ddim.images[i])), 0);
  assert.ok(maxDiff < 1e-5, `euler vs ddim(eta 0) max |diff| ${maxDiff}`);
  assert.notDeepEqual(noisy.images, euler.images);
  assert.ok(noisy.images.every(Number.isFinite));
  model.release();
});
