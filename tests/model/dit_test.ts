// The WebGPU engine against PyTorch: tools/train_mnist_dit.py --fixtures ran the same exported weights on
// fixed inputs and stored every intermediate the engine exposes.
import assert from "node:assert/strict";
import { submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { loadMnist, mnistRequest } from "../support/mnist.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const FIXTURE = "tests/fixtures/mnist-dit-forward.safetensors";

// fp32 on both sides with different summation orders, tanh/exp implementations and an online softmax. Measured
// on llvmpipe: max |diff| 2.9e-6 on the last hidden state, 4.5e-6 after 4 guided steps; the bound leaves ~10x
// room for other adapters' transcendental functions while a wrong op (errors >= 1e-2) still fails.
const HIDDEN_TOL = { atol: 5e-5, rtol: 1e-4 };

gpuTest(
  "DiT forward matches PyTorch after the prologue, block 0, the last block and the output",
  async (ctx) => {
    const fixture = await readFixture(FIXTURE);
    const model = await loadMnist(ctx);
    const graph = model.model.build(2);
    ctx.pool.write(graph.x, fixtureTensor(fixture, "x"));
    ctx.pool.write(graph.t, fixtureTensor(fixture, "t"));
    ctx.pool.write(graph.labels, Uint32Array.from(fixtureTensor(fixture, "labels")));
    await ctx.kernels.ready();
    const stages: [string, typeof graph.prologue, Float32Array, typeof graph.hidden][] = [
      ["hidden_prologue", graph.prologue, fixtureTensor(fixture, "hidden_prologue"), graph.hidden],
      ["hidden_block0", graph.blocks[0], fixtureTensor(fixture, "hidden_block0"), graph.hidden],
      [
        "hidden_last_block",
        graph.blocks.slice(1).flat(),
        fixtureTensor(fixture, "hidden_last_block"),
        graph.hidden,
      ],
      ["velocity", graph.epilogue, fixtureTensor(fixture, "velocity"), graph.output],
    ];
    for (const [name, commands, want, tensor] of stages) {
      submitDispatches(ctx.gpu, commands);
      assertClose(await readFloats(ctx.gpu, tensor), want, HIDDEN_TOL, name);
    }
    graph.release();
    model.release();
  },
);

gpuTest("DiT sampling (4 Euler steps, guidance 1.5) matches PyTorch from the same noise", async (ctx) => {
  const fixture = await readFixture(FIXTURE);
  const model = await loadMnist(ctx);
  const labels = [...fixtureTensor(fixture, "sample_labels")];
  const steps = Number(fixture.metadata.sample_steps ?? 4);
  const guidance = Number(fixture.metadata.sample_guidance ?? 1.5);
  const result = await model.run(mnistRequest(model, { labels, steps, seed: 0, guidance }), {
    latents: fixtureTensor(fixture, "sample_noise"),
  });
  assertClose(result.images, fixtureTensor(fixture, "sample_final"), HIDDEN_TOL, "sample_final");
  assert.equal(result.readbacks, 1, "the only readback of a plain run is the final image");
  assert.equal(result.submits, steps, "one submit per step");
  model.release();
});
