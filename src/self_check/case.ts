// One self-check case and its runner: a kernel family on tiny deterministic inputs against its CPU reference.
import type { GpuContext } from "../gpu/context.ts";
import { deterministicInput, maxAbsDiff } from "../gpu/deterministic_input.ts";
import { type Dispatch, submitDispatches } from "../gpu/kernel.ts";
import { readFloats } from "../gpu/readback.ts";
import { elementCount, type Tensor } from "../gpu/tensor.ts";

export interface SelfCheckResult {
  /** The op checked, as the start-up log names it. */
  kernel: string;
  /** Shader files (stems under shaders/) whose pipelines ran: the labels of the op's dispatches. */
  shaders: string[];
  ok: boolean;
  maxAbsErr: number;
  tolerance: number;
}

/** What a case's op hands the runner: `out` is read back after one submit of `dispatches`. */
export interface CheckedOp {
  dispatches: Dispatch[];
  out: Tensor;
  /** Releases what the op allocated beyond the case's inputs (which the runner releases). */
  release(): void;
}

export interface SelfCheckCase<Input extends string = string> {
  kernel: string;
  /** Input name -> shape; input i (in this order) is filled with deterministicInput(size, i + 1). */
  inputs: Record<Input, readonly number[]>;
  build(ctx: GpuContext, tensors: Record<Input, Tensor>): CheckedOp;
  /** What `out` must hold (the whole tensor, for ops that work in place), from the host inputs. */
  reference(values: Record<Input, Float32Array>): ArrayLike<number>;
  /** Largest accepted |GPU - reference|; each case says why. */
  tolerance: number;
}

/** Infers a case's input names from its `inputs`, so build and reference are checked against them. */
export function selfCheckCase<Input extends string>(c: SelfCheckCase<Input>): SelfCheckCase {
  return c;
}

/** Uploads the inputs, builds, runs and reads the op once, and releases everything it made. */
export async function runSelfCheckCase(ctx: GpuContext, c: SelfCheckCase): Promise<SelfCheckResult> {
  const shapes = Object.entries(c.inputs);
  const values = Object.fromEntries(
    shapes.map(([name, shape], i) => [name, deterministicInput(elementCount(shape), i + 1)]),
  );
  const tensors: Record<string, Tensor> = {};
  try {
    for (const [name, shape] of shapes) tensors[name] = ctx.pool.upload(values[name], shape);
    const op = c.build(ctx, tensors);
    try {
      await ctx.kernels.ready();
      submitDispatches(ctx.gpu, op.dispatches);
      const got = await readFloats(ctx.gpu, op.out);
      const want = c.reference(values);
      // A reference of another length compares nothing useful: it fails instead.
      const err = got.length === want.length ? maxAbsDiff(got, want) : NaN;
      return {
        kernel: c.kernel,
        shaders: [...new Set(op.dispatches.map((d) => d.label))],
        ok: err <= c.tolerance,
        maxAbsErr: err,
        tolerance: c.tolerance,
      };
    } finally {
      op.release();
    }
  } catch (e) {
    throw new Error(`self-check ${c.kernel}: ${e instanceof Error ? e.message : e}`, { cause: e });
  } finally {
    for (const t of Object.values(tensors)) t.release();
  }
}
