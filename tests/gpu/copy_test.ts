import assert from "node:assert/strict";
import { copyCommand, KernelError } from "../../src/gpu/kernel.ts";
import { copyAsDispatch } from "../../src/ops/copy.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

// FLUX's split of the joint attention output ([text rows, image rows] into two tensors) at offsets that are and
// are not multiples of 4 floats (vec4 and scalar paths), over one and several workgroups: the dispatch moves
// exactly the floats the buffer copy would, and nothing else.
const CASES = [
  { rows: 7, image: 12, width: 32 },
  { rows: 3, image: 5, width: 3 },
  { rows: 64, image: 300, width: 36 },
];

for (const { rows, image, width } of CASES) {
  gpuTest(
    `copyAsDispatch: the rows of a ${rows} + ${image} x ${width} joint tensor, as copyCommand`,
    async (ctx) => {
      const joint = randn((rows + image) * width, rows + width);
      const src = ctx.pool.upload(joint, [rows + image, width]);
      const dst = ctx.pool.upload(new Float32Array(image * width).fill(7), [image, width]);
      const op = copyAsDispatch(
        ctx,
        copyCommand("image rows", src, dst, { srcOffset: rows * width * 4, bytes: image * width * 4 }),
      );
      assert.deepEqual(await runAndRead(ctx, op.dispatches, dst), joint.slice(rows * width));
      const part = ctx.pool.upload(new Float32Array(image * width).fill(7), [image, width]);
      const tail = copyAsDispatch(
        ctx,
        copyCommand("tail", src, part, { srcOffset: 4, dstOffset: 8, bytes: 12 }),
      );
      const expected = new Float32Array(image * width).fill(7);
      expected.set(joint.slice(1, 4), 2);
      assert.deepEqual(await runAndRead(ctx, tail.dispatches, part), expected, "only the bytes asked for");
      for (const t of [op, tail]) t.release();
      for (const t of [src, dst, part]) t.release();
    },
  );
}

gpuTest("copyAsDispatch refuses a copy within one buffer", (ctx) => {
  const t = ctx.pool.tensor([2, 8]);
  assert.throws(
    () => copyAsDispatch(ctx, copyCommand("shift", t, t, { dstOffset: 32, bytes: 32 })),
    (e: unknown) => e instanceof KernelError && /share a buffer/.test(e.message),
  );
  t.release();
});
