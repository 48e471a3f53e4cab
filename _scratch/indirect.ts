import { acquireGpuOrExplain } from "../src/cli/acquire_gpu.ts";
import { marginalMs } from "../src/cli/bench/harness.ts";
import { Dit } from "../src/model/dit.ts";
import { isDispatch } from "../src/gpu/kernel.ts";
import { conditionalDispatches, ON_COMPUTE } from "../src/ops/conditional_dispatch.ts";
const ctx = (await acquireGpuOrExplain())!;
const model = await Dit.load(ctx, "weights/mnist-dit");
const g = model.graph(2);
const direct = g.blocks.slice(1).flat().filter(isDispatch);
const args = new Uint32Array(direct.flatMap((d) => [...d.workgroups]));
const buf = ctx.gpu.device.createBuffer({
  size: args.byteLength,
  usage: GPUBufferUsage.INDIRECT | GPUBufferUsage.COPY_DST,
});
ctx.gpu.device.queue.writeBuffer(buf, 0, args);
const cond = {
  dispatches: direct.map((d, j) => ({ ...d, uniform: undefined, indirect: { buffer: buf, offset: 12 * j } })),
};
console.log("dispatches", direct.length);
for (let r = 0; r < 3; r++) {
  const a = await marginalMs(ctx, direct, { budgetMs: 4000 });
  const b = await marginalMs(ctx, cond.dispatches, { budgetMs: 4000 });
  console.log(
    `direct ${a.toFixed(1)} ms, indirect ${b.toFixed(1)} ms, +${
      ((b - a) / direct.length).toFixed(3)
    } ms per dispatch`,
  );
}
