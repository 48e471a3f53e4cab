// What the digit classifier reads of a model's images: 28x28 gray ones as they are; mnist-flux's 32x32 RGB
// ones centre-cropped (its digits are padded by 2 pixels a side) with the channels averaged.
import assert from "node:assert/strict";
import { classifierInput } from "../../src/model/classifier.ts";

Deno.test("28x28 gray images pass through; 32x32 RGB ones are cropped to the centre and averaged", () => {
  const gray = Float32Array.from({ length: 2 * 28 * 28 }, (_, i) => i);
  assert.equal(classifierInput(gray, [2, 1, 28, 28]), gray);
  // Channel c of pixel (y, x) holds c + 10 y + 1000 x: the average is 1 + 10 y + 1000 x.
  const rgb = new Float32Array(3 * 32 * 32);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) rgb[(c * 32 + y) * 32 + x] = c + 10 * y + 1000 * x;
    }
  }
  const out = classifierInput(rgb, [1, 3, 32, 32]);
  assert.equal(out.length, 28 * 28);
  assert.equal(out[0], 1 + 10 * 2 + 1000 * 2);
  assert.equal(out[27 * 28 + 27], 1 + 10 * 29 + 1000 * 29);
  assert.throws(
    () => classifierInput(new Float32Array(16 * 16), [1, 1, 16, 16]),
    /smaller than the classifier's 28x28/,
  );
});
