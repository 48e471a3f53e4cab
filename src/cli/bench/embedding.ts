// RoPE at a FLUX shape (4096 image + 512 text tokens, 24 heads, head dim 128, axes [16, 56, 56]) with the
// precomputed (cos, sin) table against shaders/rope_naive.wgsl, which recomputes pow/cos/sin for every element.
// GB/s counts the bytes that must move: q and k read and written once (the 2.4 MB table or the ids not included).
// q and k are separate [1, 4608, 3072] tensors: a fused qkv at this shape is 170 MB, over the 128 MiB storage
// binding limit of some adapters (llvmpipe); the kernel sees the same row layout either way.
import type { GpuContext } from "../../gpu/context.ts";
import {
  bindKernel,
  type Dispatch,
  disposeDispatches,
  groups,
  packUniform,
  submitDispatches,
} from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { rope, type RopeAxes, ropeTable } from "../../ops/rope.ts";
import type { RowView } from "../../ops/row_view.ts";
import { rope as ropeRef } from "../../ref/rope.ts";
import { benchInput, type BenchSuite, maxAbsDiff, timeCommands } from "./harness.ts";

const AXES: RopeAxes = { axesDim: [16, 56, 56], theta: 10000 };
const [TEXT_TOKENS, GRID, HEADS, HEAD_DIM] = [512, 64, 24, 128];
const NAIVE_WG = 64;

/** Text tokens at [0, 0, 0], then the 64 x 64 latent grid at [0, row, col]. */
function fluxIds(): Float32Array {
  const ids = new Float32Array((TEXT_TOKENS + GRID * GRID) * 3);
  for (let n = TEXT_TOKENS; n < TEXT_TOKENS + GRID * GRID; n++) {
    ids[n * 3 + 1] = Math.floor((n - TEXT_TOKENS) / GRID);
    ids[n * 3 + 2] = (n - TEXT_TOKENS) % GRID;
  }
  return ids;
}

function naiveRope(ctx: GpuContext, view: RowView, ids: Tensor, tokens: number): Dispatch {
  const kernel = ctx.kernels.get({
    name: "rope_naive",
    bindings: ["read", "read_write", "uniform"],
    constants: { WG: NAIVE_WG },
  });
  const axisDim = [0, 1, 2, 3].map((a) => AXES.axesDim[a] ?? 0);
  return bindKernel(
    ctx.gpu,
    kernel,
    [ids, view.tensor],
    [groups((HEADS * HEAD_DIM) / 2, NAIVE_WG), tokens, 1],
    packUniform([
      ...axisDim.map((d) => ["u32", d] as ["u32", number]),
      ["u32", tokens],
      ["u32", HEAD_DIM / 2],
      ["u32", HEADS],
      ["u32", view.offset / 2],
      ["u32", view.rowStride / 2],
      ["u32", AXES.axesDim.length],
      ["f32", AXES.theta],
    ]),
  );
}

export const embeddingBench: BenchSuite = {
  name: "embedding",
  async run(ctx, report) {
    const ids = fluxIds();
    const tokens = ids.length / 3;
    const rowLength = HEADS * HEAD_DIM;
    const shape = `[1,${tokens},${HEADS},${HEAD_DIM}] q+k`;
    const inputs = [benchInput(tokens * rowLength, 1), benchInput(tokens * rowLength, 2)];
    const rows = { offset: 0, rowStride: rowLength };
    const views: RowView[] = inputs.map((data) => ({
      tensor: ctx.pool.upload(data, [1, tokens, rowLength]),
      ...rows,
    }));
    const wanted = inputs.map((data) => ropeRef(data, rows, ids, AXES, { batch: 1, heads: HEADS }));

    const buildStart = performance.now();
    const table = ropeTable(ctx, ids, [tokens, 3], AXES);
    const buildMs = performance.now() - buildStart;
    report({
      kernel: "rope table (CPU float64)",
      shape: `[${tokens},${HEAD_DIM / 2},2]`,
      ms: buildMs,
      gflops: null,
      maxAbsErr: null,
      note: "built and uploaded once per request shape, not per step",
    });

    const idsTensor = ctx.pool.upload(ids, [tokens, 3]);
    const variants: [string, Dispatch[]][] = [
      ["rope (table)", rope(ctx, views, table, { batch: 1, heads: HEADS, headDim: HEAD_DIM }).dispatches],
      ["rope_naive (pow per element)", views.map((view) => naiveRope(ctx, view, idsTensor, tokens))],
    ];
    for (const [kernel, dispatches] of variants) {
      // In place: restore the inputs, check one application, then time (later repeats keep rotating).
      views.forEach((view, i) =>
        ctx.gpu.device.queue.writeBuffer(view.tensor.buffer, 0, inputs[i].buffer as ArrayBuffer)
      );
      submitDispatches(ctx.gpu, dispatches);
      let maxAbsErr = 0;
      for (const [i, view] of views.entries()) {
        maxAbsErr = Math.max(maxAbsErr, maxAbsDiff(await readFloats(ctx.gpu, view.tensor), wanted[i]));
      }
      const ms = await timeCommands(ctx, dispatches);
      const bytes = views.length * 2 * tokens * rowLength * 4;
      report({
        kernel,
        shape,
        ms,
        gflops: null,
        maxAbsErr,
        note: `${(bytes / (ms * 1e6)).toFixed(2)} GB/s q+k r/w`,
      });
      disposeDispatches(dispatches);
    }
    idsTensor.release();
    table.release();
    for (const view of views) view.tensor.release();
  },
};
