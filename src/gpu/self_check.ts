// Start-up check that the adapter computes what the CPU references compute: a driver that miscompiles a
// kernel is caught before it serves a single image.
import { residualDiff } from "../ops/residual_diff.ts";
import { residualDiff as residualDiffRef } from "../ref/residual_diff.ts";
import type { GpuContext } from "./context.ts";
import { submitDispatches } from "./kernel.ts";
import { readFloats } from "./readback.ts";

export interface SelfCheckResult {
  kernel: string;
  ok: boolean;
  maxAbsErr: number;
}

/** Small deterministic inputs: values in [-1, 1) from a fixed linear congruential sequence. */
function sequence(size: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: size }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

function maxAbsErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function checkResidualDiff(ctx: GpuContext): Promise<SelfCheckResult> {
  const a = sequence(2 * 49 * 32, 1);
  const b = sequence(2 * 49 * 32, 2);
  const ta = ctx.pool.upload(a, [2, 49, 32]);
  const tb = ctx.pool.upload(b, [2, 49, 32]);
  const op = residualDiff(ctx, ta, tb, { samples: 2 });
  submitDispatches(ctx.gpu, op.dispatches);
  const err = maxAbsErr(await readFloats(ctx.gpu, op.result), residualDiffRef(a, b, 32, { samples: 2 }));
  op.release();
  ta.release();
  tb.release();
  return { kernel: "residual_diff", ok: err < 1e-5, maxAbsErr: err };
}

export async function selfCheck(ctx: GpuContext): Promise<SelfCheckResult[]> {
  const checks = [checkResidualDiff];
  const results: SelfCheckResult[] = [];
  for (const check of checks) results.push(await check(ctx));
  await ctx.kernels.ready();
  return results;
}
