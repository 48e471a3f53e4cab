// The cache decision's own cost: one fused diff over a DiT hidden state, against the CPU reference.
import { readFloats } from "../../gpu/readback.ts";
import { residualDiff } from "../../ops/residual_diff.ts";
import { residualDiff as residualDiffRef } from "../../ref/residual_diff.ts";
import { benchInput, type BenchSuite, maxAbsDiff, timeCommands } from "./harness.ts";

export const residualDiffBench: BenchSuite = {
  name: "residual_diff",
  async run(ctx, report) {
    for (const shape of [[2, 49, 128], [1, 4096, 3072]]) {
      const size = shape.reduce((a, b) => a * b);
      const a = benchInput(size, 1);
      const b = benchInput(size, 2);
      const ta = ctx.pool.upload(a, shape);
      const tb = ctx.pool.upload(b, shape);
      const op = residualDiff(ctx, ta, tb);
      const ms = await timeCommands(ctx, op.dispatches);
      const got = await readFloats(ctx.gpu, op.result);
      const want = residualDiffRef(a, b, shape[shape.length - 1]);
      const gbps = (2 * size * 4) / (ms * 1e6);
      report({
        kernel: "residual_diff",
        shape: `[${shape.join(",")}]`,
        ms,
        gflops: null,
        maxAbsErr: maxAbsDiff(got, want),
        note: `${gbps.toFixed(2)} GB/s read`,
      });
      op.release();
      ta.release();
      tb.release();
    }
  },
};
