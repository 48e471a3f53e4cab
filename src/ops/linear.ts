// Linear layer y = x W^T + b (PyTorch Linear layout) with a fused epilogue (shaders/linear.wgsl + the
// generated tile of src/ops/linear_wgsl.ts): optional activation, and optional accumulation into an existing
// tensor, gated per sample for DiT's adaLN-Zero residual: out += gate[sample] * act(x W^T + b), or times a
// tensor of the output's shape for T5's gated GELU: out = gelu(x wi_0^T) * (x wi_1^T).
import type { GpuContext } from "../gpu/context.ts";
import type { Gpu } from "../gpu/device.ts";
import { bindKernel, type Dispatch, disposeDispatches, KernelError, packUniform } from "../gpu/kernel.ts";
import { formatShape, type Tensor } from "../gpu/tensor.ts";
import { formatTiling, linearShader, type LinearTiling, workgroupTile } from "./linear_wgsl.ts";
import { isWeightDType, type WeightDType } from "./stored_weights.ts";

const KERNEL = "linear";
const BINDINGS = ["read", "read", "read", "read", "read_write", "uniform"] as const;

const FLAG_BIAS = 1;
const FLAG_ACCUMULATE = 2;
const FLAG_GATE = 4;
const ACTIVATIONS = { none: 0, gelu_tanh: 1, silu: 2, relu: 3, quick_gelu: 4, gelu_erf: 5 } as const;

/** quick_gelu: x * sigmoid(1.702 x) (CLIP); gelu_erf: PyTorch's exact GELU, 0.5 x (1 + erf(x / sqrt 2)). */
export type Activation = Exclude<keyof typeof ACTIVATIONS, "none">;

/**
 * Tilings by adapter kind. llvmpipe, 1024^3 (src/cli/bench/matmul.ts): 8x8 per lane 8.2 GFLOP/s and 0.3 s to
 * compile, 8x16 9.5 and 0.9 s, 16x16 12 and 3 s, 32x32 17 and 11 s; cpu (8x16) is the compile-time
 * compromise, as every pipeline is compiled at start-up and in every test run. Lane layout made no difference.
 * cpuThin serves fewer than 8 rows (adaLN and timestep linears, M = batch): [2, 384] x [2304, 384] runs 1.6x
 * faster than with cpu. gpu: 16 accumulators per lane stay in registers; 64 lanes share x rows and W rows
 * through the cache.
 */
export const LINEAR_TILINGS: Record<"cpu" | "cpuThin" | "gpu", LinearTiling> = {
  cpu: { rowsPerLane: 8, colsPerLane: 16, laneRows: 1, laneCols: 8 },
  cpuThin: { rowsPerLane: 2, colsPerLane: 16, laneRows: 1, laneCols: 8 },
  gpu: { rowsPerLane: 4, colsPerLane: 4, laneRows: 8, laneCols: 8 },
};

/** Software adapters run invocations as SIMD lanes of a CPU, where per-lane register tiles pay most. */
function isCpuAdapter(gpu: Gpu): boolean {
  return /llvmpipe|lavapipe|softpipe|swiftshader/i.test(gpu.info.adapter);
}

/** The tiling linear() uses for `rows` output rows (per batch entry) on this adapter. */
export function linearTiling(gpu: Gpu, rows: number): LinearTiling {
  const { cpu, cpuThin, gpu: gpuTiling } = LINEAR_TILINGS;
  if (!isCpuAdapter(gpu)) return gpuTiling;
  return rows < cpu.rowsPerLane ? cpuThin : cpu;
}

/** Gate of output row r, column n: tensor[offset + floor(r / rowsPerGate) * stride + n]. */
export interface GateView {
  /** Typically adaLN's mod [B, k*C], gate chunk i: offset i*C, stride k*C, rowsPerGate = tokens. */
  tensor: Tensor;
  offset: number;
  stride: number;
  rowsPerGate: number;
}

/** Output row r, column n at tensor[offset + r * rowStride + n] (rows of all batch entries in sequence). */
export interface OutputView {
  tensor: Tensor;
  offset?: number;
  /** Default N. */
  rowStride?: number;
}

export interface LinearOptions {
  /** [N] */
  bias?: Tensor;
  activation?: Activation;
  /** Write into this view instead of a new [..., M, N] tensor. */
  out?: OutputView;
  /** out += result (needs `out`). */
  accumulate?: boolean;
  /** out += gate * result (needs `out`; implies accumulate). */
  gate?: GateView;
  /** [..., M, N] f32: result * multiply, elementwise (accumulated only with `accumulate`). Not with `gate`. */
  multiply?: Tensor;
  /** Overrides linearTiling(); for benchmarks. */
  tiling?: LinearTiling;
}

export interface Linear {
  dispatches: Dispatch[];
  /** A new [..., M, N] tensor, or the tensor of options.out. */
  out: Tensor;
  /** Releases the uniform and the output tensor if the op allocated it; never the inputs or options.out. */
  release(): void;
}

interface Layout {
  batch: number;
  /** Rows per batch entry (all folded rows of x when W is shared). */
  rows: number;
  cols: number;
  depth: number;
}

function describe(x: Tensor, w: Tensor): string {
  return `x ${formatShape(x.shape)}, W ${formatShape(w.shape)}`;
}

function checkLayout(x: Tensor, w: Tensor): Layout {
  const shapes = describe(x, w);
  if (x.shape.length < 1 || (w.shape.length !== 2 && w.shape.length !== 3)) {
    throw new KernelError(KERNEL, `${shapes}: W must be [N, K] or [batch, N, K], x [..., K]`);
  }
  const depth = x.shape[x.shape.length - 1];
  const [cols, wDepth] = w.shape.slice(-2);
  if (wDepth !== depth) {
    throw new KernelError(KERNEL, `${shapes}: K of x (${depth}) differs from K of W (${wDepth})`);
  }
  if (w.shape.length === 2) return { batch: 1, rows: x.size / depth, cols, depth };
  if (x.shape.length !== 3 || x.shape[0] !== w.shape[0]) {
    throw new KernelError(
      KERNEL,
      `${shapes}: a batched W [batch, N, K] needs x [batch, M, K] of equal batch`,
    );
  }
  return { batch: w.shape[0], rows: x.shape[1], cols, depth };
}

function checkOperands(x: Tensor, w: Tensor, layout: Layout, options: LinearOptions): void {
  const shapes = describe(x, w);
  const named: [string, Tensor | undefined][] = [
    ["x", x],
    ["W", w],
    ["bias", options.bias],
    ["gate", options.gate?.tensor],
    ["multiply", options.multiply],
    ["out", options.out?.tensor],
  ];
  if (!isWeightDType(w.dtype)) {
    throw new KernelError(KERNEL, `${shapes}: W is ${w.dtype}, expected f32, f16 or bf16`);
  }
  for (const [name, t] of named.filter(([name]) => name !== "W")) {
    if (t && t.dtype !== "f32") {
      throw new KernelError(KERNEL, `${shapes}: ${name} ${formatShape(t.shape)} is ${t.dtype}, expected f32`);
    }
  }
  if (options.bias && (options.bias.shape.length !== 1 || options.bias.size !== layout.cols)) {
    throw new KernelError(
      KERNEL,
      `${shapes}: bias ${formatShape(options.bias.shape)} must be [N] = [${layout.cols}]`,
    );
  }
  const { multiply } = options;
  if (multiply && (options.gate || multiply.size !== layout.batch * layout.rows * layout.cols)) {
    throw new KernelError(
      KERNEL,
      `${shapes}: multiply ${formatShape(multiply.shape)} must hold the ${layout.batch * layout.rows} x ` +
        `${layout.cols} outputs, and comes without a gate (both are bound as the gate)`,
    );
  }
  const out = options.out?.tensor;
  for (const [name, t] of named.slice(0, -1)) {
    if (t && out && t.buffer === out.buffer) {
      throw new KernelError(KERNEL, `${shapes}: ${name} shares out's buffer, which is bound read_write`);
    }
  }
}

/** Every bound tensor (and the output to allocate) must fit one storage binding. */
function checkLimits(gpu: Gpu, x: Tensor, w: Tensor, bound: readonly Pick<Tensor, "shape" | "byteLength">[]) {
  const limit = gpu.info.limits.maxStorageBufferBindingSize;
  for (const t of bound) {
    if (t.byteLength > limit) {
      throw new KernelError(
        KERNEL,
        `${describe(x, w)}: tensor ${formatShape(t.shape)} holds ${t.byteLength} bytes, over the ` +
          `device's maxStorageBufferBindingSize ${limit}`,
      );
    }
  }
}

function isIndex(v: number): boolean {
  return Number.isInteger(v) && v >= 0;
}

/** Throws unless the view's last element, `end` - 1, lies inside its tensor. */
function checkViewEnd(x: Tensor, w: Tensor, what: string, tensor: Tensor, end: number, holds: string): void {
  if (end > tensor.size) {
    throw new KernelError(
      KERNEL,
      `${describe(x, w)}: ${what} of ${formatShape(tensor.shape)} reaches element ${end - 1} (${holds}), ` +
        `past its ${tensor.size} elements`,
    );
  }
}

/** Offset and row stride of the output view; throws unless every output lies inside its tensor. */
function checkOutputView(x: Tensor, w: Tensor, view: OutputView, totalRows: number, cols: number) {
  const { tensor, offset = 0, rowStride = cols } = view;
  const what = `out view (offset ${offset}, rowStride ${rowStride})`;
  if (!isIndex(offset) || !Number.isInteger(rowStride) || rowStride < cols) {
    throw new KernelError(
      KERNEL,
      `${describe(x, w)}: ${what} needs an offset >= 0 and rowStride >= N = ${cols}`,
    );
  }
  const end = offset + (totalRows - 1) * rowStride + cols;
  checkViewEnd(x, w, what, tensor, end, `${totalRows} rows of N = ${cols}`);
  return { offset, rowStride };
}

function checkGateView(x: Tensor, w: Tensor, gate: GateView, totalRows: number, cols: number): void {
  const { tensor, offset, stride, rowsPerGate } = gate;
  const what = `gate view (offset ${offset}, stride ${stride}, rowsPerGate ${rowsPerGate})`;
  if (!isIndex(offset) || !isIndex(stride) || !Number.isInteger(rowsPerGate) || rowsPerGate < 1) {
    throw new KernelError(
      KERNEL,
      `${describe(x, w)}: ${what} needs integers, offset and stride >= 0, rowsPerGate >= 1`,
    );
  }
  const vectors = Math.ceil(totalRows / rowsPerGate);
  const end = offset + (vectors - 1) * stride + cols;
  checkViewEnd(x, w, what, tensor, end, `${vectors} gate vectors of N = ${cols} for ${totalRows} rows`);
}

/**
 * y = act(x W^T + b) for x [..., K] (leading dims fold into rows) and W [N, K], or x [batch, M, K] and
 * W [batch, N, K] (batch on workgroup z); written to a new [..., M, N] tensor or into options.out, plain,
 * accumulated, gated or multiplied. Checks everything before allocating or binding anything.
 */
export function linear(ctx: GpuContext, x: Tensor, w: Tensor, options: LinearOptions = {}): Linear {
  const layout = checkLayout(x, w);
  checkOperands(x, w, layout, options);
  const { batch, rows, cols, depth } = layout;
  const totalRows = batch * rows;
  const accumulate = options.accumulate === true || options.gate !== undefined;
  if (accumulate && !options.out) {
    throw new KernelError(KERNEL, `${describe(x, w)}: accumulate and gate need options.out to add onto`);
  }
  const view = options.out && checkOutputView(x, w, options.out, totalRows, cols);
  if (options.gate) checkGateView(x, w, options.gate, totalRows, cols);
  // multiply is the gate view of one vector per output row.
  const gate = options.gate ??
    (options.multiply && { tensor: options.multiply, offset: 0, stride: cols, rowsPerGate: 1 });
  const outShape = [...x.shape.slice(0, -1), cols];
  const bound = [x, w, options.bias, gate?.tensor, options.out?.tensor].filter((t) => t !== undefined);
  checkLimits(
    ctx.gpu,
    x,
    w,
    view ? bound : [...bound, { shape: outShape, byteLength: totalRows * cols * 4 }],
  );

  const tiling = options.tiling ?? linearTiling(ctx.gpu, rows);
  const [tileRows, tileCols] = workgroupTile(tiling);
  const grid = [Math.ceil(cols / tileCols), Math.ceil(rows / tileRows), batch] as const;
  const limit = ctx.gpu.info.limits.maxComputeWorkgroupsPerDimension;
  if (grid.some((g) => g > limit)) {
    throw new KernelError(
      KERNEL,
      `${describe(x, w)}: [${grid.join(", ")}] workgroups of ${tileRows}x${tileCols} outputs ` +
        `(${formatTiling(tiling)}) exceed maxComputeWorkgroupsPerDimension ${limit}`,
    );
  }

  const vec4 = depth % 4 === 0;
  const kernel = ctx.kernels.get({
    name: KERNEL,
    source: linearShader(tiling, vec4, w.dtype as WeightDType),
    bindings: BINDINGS,
  });
  const kDepth = vec4 ? depth / 4 : depth;
  const flags = (options.bias ? FLAG_BIAS : 0) | (accumulate ? FLAG_ACCUMULATE : 0) |
    (gate ? FLAG_GATE : 0);
  const uniform = packUniform([
    ["u32", rows],
    ["u32", cols],
    ["u32", kDepth],
    ["u32", w.shape.length === 3 ? cols * kDepth : 0],
    ["u32", view?.offset ?? 0],
    ["u32", view?.rowStride ?? cols],
    ["u32", flags],
    ["u32", ACTIVATIONS[options.activation ?? "none"]],
    ["u32", gate?.offset ?? 0],
    ["u32", gate?.stride ?? 0],
    ["u32", gate?.rowsPerGate ?? 1],
  ]);
  const out = options.out?.tensor ?? ctx.pool.tensor(outShape);
  // Unused bias and gate bindings hold W: a buffer may back several read-only bindings of one dispatch.
  const dispatch = bindKernel(
    ctx.gpu,
    kernel,
    [x, w, options.bias ?? w, gate?.tensor ?? w, out],
    grid,
    uniform,
  );
  const dispatches = [dispatch];
  return {
    dispatches,
    out,
    release() {
      if (!options.out) out.release();
      disposeDispatches(dispatches);
    },
  };
}
