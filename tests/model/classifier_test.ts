// The WebGPU classifier against tools/train_mnist_classifier.py's PyTorch outputs on the same inputs.
import assert from "node:assert/strict";
import { DigitClassifier } from "../../src/model/classifier.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

// fp32 both sides; K up to 3136 in fc1 sums in a different order: ~1e-6 relative per output.
const TOL = { atol: 1e-4, rtol: 1e-4 };

gpuTest("classifier features and logits match PyTorch; held-out digits are read correctly", async (ctx) => {
  const fixture = await readFixture("tests/fixtures/mnist-classifier.safetensors");
  const classifier = await DigitClassifier.load(ctx);
  const result = await classifier.classify(fixtureTensor(fixture, "x"));
  assertClose(result.features, fixtureTensor(fixture, "features"), TOL, "features");
  assertClose(result.logits, fixtureTensor(fixture, "logits"), TOL, "logits");
  const labels = [...fixtureTensor(fixture, "labels")];
  labels.forEach((label, i) => {
    if (label >= 0) assert.equal(result.predicted[i], label, `held-out digit ${i}`);
  });
  classifier.release();
});
