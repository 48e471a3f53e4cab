// Linear layers y = x W^T (W [N, K], PyTorch layout): the naive kernel (shaders/linear_naive.wgsl), the
// promoted register-tiled one (ops/linear.ts, with the tiling it picks here), a larger CPU tiling for the
// compile-time trade-off, and tfjs-backend-webgpu's matMul (transposeB) on its own device of the same adapter,
// in one run. Shapes: DiT-S/2 blocks (98 tokens = 2 samples x 49 patches; qkv-like, fc1-like, fc2-like),
// 1024^3 and a FLUX-like [4096, 3072] x [3072, 3072] (each variant only where its earlier rate predicts a
// run under 20 s). maxAbsErr is against src/ref/linear.ts on every row of small problems and 8 sampled rows
// of large ones.
import type { GpuContext } from "../../gpu/context.ts";
import { bindKernel, type Dispatch, disposeDispatches, packUniform } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { linear, linearTiling } from "../../ops/linear.ts";
import { formatTiling, type LinearTiling } from "../../ops/linear_wgsl.ts";
import { linear as linearRef } from "../../ref/linear.ts";
import {
  benchInput,
  type BenchRow,
  type BenchSuite,
  gflops,
  maxAbsDiff,
  timeCommands,
  type TimingOptions,
} from "./harness.ts";
import { loadTfjsMatMul, type TfjsMatMul } from "./tfjs_matmul.ts";

interface Problem {
  m: number;
  n: number;
  k: number;
  what: string;
}

const PROBLEMS: Problem[] = [
  { m: 98, n: 384, k: 128, what: "DiT-S qkv-like" },
  { m: 98, n: 512, k: 128, what: "DiT-S fc1-like" },
  { m: 98, n: 128, k: 512, what: "DiT-S fc2-like" },
  { m: 1024, n: 1024, k: 1024, what: "square" },
  { m: 4096, n: 3072, k: 3072, what: "FLUX-like" },
];

/** The larger CPU tiling: faster at 1024^3, but about 3x the compile time of the promoted one. */
const WIDE_TILING: LinearTiling = { rowsPerLane: 16, colsPerLane: 16, laneRows: 1, laneCols: 8 };
const NAIVE_WG = 8;
const MAX_RUN_MS = 20_000;
/** Past this a single run is timed once, without warmup: the ~11 ms submit overhead is < 1% of it. */
const SLOW_RUN_MS = 2_000;
const SAMPLED_ROWS = 8;

/** Rows the error is measured on, and the reference values of those rows. */
function referenceRows(x: Float32Array, w: Float32Array, p: Problem): { rows: number[]; want: Float32Array } {
  const count = p.m <= 128 ? p.m : SAMPLED_ROWS;
  const rows = Array.from({ length: count }, (_, i) => Math.floor((i * (p.m - 1)) / Math.max(1, count - 1)));
  const xRows = new Float32Array(count * p.k);
  rows.forEach((r, i) => xRows.set(x.subarray(r * p.k, (r + 1) * p.k), i * p.k));
  return { rows, want: linearRef(xRows, w, { rows: count, cols: p.n, depth: p.k }) };
}

function maxRowError(got: Float32Array, p: Problem, ref: { rows: number[]; want: Float32Array }): number {
  const row = (values: Float32Array, r: number) => values.subarray(r * p.n, (r + 1) * p.n);
  return ref.rows.reduce((err, r, i) => Math.max(err, maxAbsDiff(row(got, r), row(ref.want, i))), 0);
}

function naiveLinear(ctx: GpuContext, x: Tensor, w: Tensor, y: Tensor, p: Problem): Dispatch {
  const kernel = ctx.kernels.get({
    name: "linear_naive",
    bindings: ["read", "read", "read_write", "uniform"],
    constants: { WG: NAIVE_WG },
  });
  const grid = [Math.ceil(p.n / NAIVE_WG), Math.ceil(p.m / NAIVE_WG), 1] as const;
  return bindKernel(
    ctx.gpu,
    kernel,
    [x, w, y],
    grid,
    packUniform([["u32", p.m], ["u32", p.n], ["u32", p.k]]),
  );
}

/** Timing plan from the variant's rate on an earlier problem: null when a run would take over 20 s. */
function plan(flops: number, rate: number | undefined): TimingOptions | null {
  if (rate === undefined) return {};
  const predictedMs = flops / (rate * 1e6);
  if (predictedMs > MAX_RUN_MS) return null;
  return predictedMs > SLOW_RUN_MS ? { warmup: 0, minRuns: 1, budgetMs: 0 } : {};
}

function skipped(kernel: string, shape: string, flops: number, rate: number): BenchRow {
  const seconds = flops / (rate * 1e9);
  return {
    kernel,
    shape,
    ms: NaN,
    gflops: null,
    maxAbsErr: null,
    note: `skipped: ~${seconds.toFixed(0)} s per run at its ${rate.toFixed(2)} GFLOP/s, over 20 s`,
  };
}

interface Variant {
  kernel: string;
  note: string;
  /** Median ms of one run timed under `timing`, and the [m, n] output. */
  measure(timing: TimingOptions): Promise<{ ms: number; out: Float32Array }>;
}

/** Times an op's dispatches, then reads its output and releases it. */
async function measureOp(
  ctx: GpuContext,
  timing: TimingOptions,
  op: { dispatches: Dispatch[]; out: Tensor; release(): void },
): Promise<{ ms: number; out: Float32Array }> {
  const ms = await timeCommands(ctx, op.dispatches, timing);
  const out = await readFloats(ctx.gpu, op.out);
  op.release();
  return { ms, out };
}

/** x [m, k] and W [n, k] on the CPU and uploaded. */
interface Inputs {
  x: Float32Array;
  w: Float32Array;
  tx: Tensor;
  tw: Tensor;
}

function variants(ctx: GpuContext, p: Problem, x: Inputs, tfjs: TfjsMatMul | null): Variant[] {
  const promoted = linearTiling(ctx.gpu, p.m);
  const list: Variant[] = [
    {
      kernel: "linear naive",
      note: "1 output per invocation",
      measure(timing) {
        const out = ctx.pool.tensor([p.m, p.n]);
        const dispatches = [naiveLinear(ctx, x.tx, x.tw, out, p)];
        return measureOp(ctx, timing, {
          dispatches,
          out,
          release: () => (out.release(), disposeDispatches(dispatches)),
        });
      },
    },
    {
      kernel: "linear",
      note: formatTiling(promoted),
      measure: (timing) => measureOp(ctx, timing, linear(ctx, x.tx, x.tw)),
    },
  ];
  if (p.m === 1024) {
    list.push({
      kernel: "linear wide tiling",
      note: `${formatTiling(WIDE_TILING)}; ~3x the compile time on llvmpipe`,
      measure: (timing) => measureOp(ctx, timing, linear(ctx, x.tx, x.tw, { tiling: WIDE_TILING })),
    });
  }
  if (tfjs) {
    list.push({
      kernel: "tfjs matMul",
      note: tfjs.note,
      measure: (timing) => tfjs.time(x.x, x.w, p.m, p.n, p.k, timing),
    });
  }
  return list;
}

async function benchProblem(
  ctx: GpuContext,
  report: (row: BenchRow) => void,
  p: Problem,
  rates: Map<string, number>,
  tfjs: TfjsMatMul | null,
): Promise<void> {
  const shape = `[${p.m},${p.k}]x[${p.n},${p.k}]`;
  const flops = 2 * p.m * p.n * p.k;
  const x = benchInput(p.m * p.k, 1);
  const w = benchInput(p.n * p.k, 2);
  const ref = referenceRows(x, w, p);
  const inputs = { x, w, tx: ctx.pool.upload(x, [p.m, p.k]), tw: ctx.pool.upload(w, [p.n, p.k]) };
  for (const variant of variants(ctx, p, inputs, tfjs)) {
    const rate = rates.get(variant.kernel);
    const timing = plan(flops, rate);
    if (!timing) {
      report(skipped(variant.kernel, shape, flops, rate!));
      continue;
    }
    const { ms, out } = await variant.measure(timing);
    rates.set(variant.kernel, gflops(flops, ms));
    const note = `${p.what}; ${variant.note}`;
    report({
      kernel: variant.kernel,
      shape,
      ms,
      gflops: gflops(flops, ms),
      maxAbsErr: maxRowError(out, p, ref),
      note,
    });
  }
  inputs.tx.release();
  inputs.tw.release();
}

export const matmulBench: BenchSuite = {
  name: "matmul",
  async run(ctx, report) {
    const tfjs = await loadTfjsMatMul();
    if (typeof tfjs === "string") {
      report({ kernel: "tfjs matMul", shape: "-", ms: NaN, gflops: null, maxAbsErr: null, note: tfjs });
    }
    const rates = new Map<string, number>();
    for (const p of PROBLEMS) {
      await benchProblem(ctx, report, p, rates, typeof tfjs === "string" ? null : tfjs);
    }
  },
};
