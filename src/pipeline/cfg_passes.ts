// The forwards of one denoising step. Classifier-free guidance runs either batched (one forward over
// [conditional; unconditional], as DiT and FLUX do here) or as two forwards of the graph at the request's
// batch (as diffusers' Wan pipeline does): then each pass copies its half of every conditioning input into the
// graph before its forward and its output into its half of the guided model output, all inside the step's
// one encoder, and the cache strategy sees which pass it runs (src/cache/separate_cfg.ts).
import type { CfgBranch } from "../cache/strategy.ts";
import type { GpuContext } from "../gpu/context.ts";
import { type Command, copyCommand } from "../gpu/kernel.ts";
import type { Owned } from "../gpu/owned.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { DenoiserGraph } from "../model/denoiser_graph.ts";

export type CfgPasses = "batched" | "separate";

export interface ForwardPass {
  /** Absent for the one forward of a batched (or unguided) step. */
  branch?: CfgBranch;
  /** Before the prologue: this pass' conditioning into the graph's inputs. */
  before: Command[];
  /** After the epilogue: the graph's output into this pass' half of `output`. */
  after: Command[];
}

export interface StepPasses {
  graph: DenoiserGraph;
  passes: ForwardPass[];
  /** What the sampler reads: [batch or 2 x batch (conditional, then unconditional), ...]. */
  output: Tensor;
}

export interface PassSpec {
  denoiser: { graph(batch: number): DenoiserGraph };
  images: number;
  guided: boolean;
  cfgPasses: CfgPasses;
  /** Separate passes: the unconditional one first (cache-dit's cfg_compute_first). */
  uncondFirst: boolean;
  /** Conditioning by input name, [graph batch or 2 x images, ...] (unconditional half after, if guided). */
  inputs: Record<string, Float32Array>;
}

/** Builds the graph and its passes, and writes the conditioning (once per request). */
export function stepPasses(ctx: GpuContext, owned: Owned, spec: PassSpec): StepPasses {
  const separate = spec.guided && spec.cfgPasses === "separate";
  const graph = spec.denoiser.graph(spec.guided && !separate ? 2 * spec.images : spec.images);
  if (!separate) {
    for (const [name, values] of Object.entries(spec.inputs)) {
      ctx.pool.write(input(graph, name, values), values);
    }
    return { graph, passes: [{ before: [], after: [] }], output: graph.output };
  }
  const staged = Object.entries(spec.inputs).map(([name, values]) => {
    const target = input(graph, name, values, 2);
    return { target, halves: owned.add(ctx.pool.upload(values, [2, ...target.shape])) };
  });
  const output = owned.add(ctx.pool.tensor([2 * graph.output.shape[0], ...graph.output.shape.slice(1)]));
  const pass = (branch: CfgBranch, half: number): ForwardPass => ({
    branch,
    before: staged.map(({ target, halves }) =>
      copyCommand(`${branch} ${target.shape}`, halves, target, {
        srcOffset: half * target.byteLength,
        bytes: target.byteLength,
      })
    ),
    after: [
      copyCommand(`${branch} output`, graph.output, output, { dstOffset: half * graph.output.byteLength }),
    ],
  });
  const passes = [pass("cond", 0), pass("uncond", 1)];
  return { graph, passes: spec.uncondFirst ? passes.reverse() : passes, output };
}

/** The graph's input `name`, checked to take `values` (`copies` x its size with separate passes). */
function input(graph: DenoiserGraph, name: string, values: Float32Array, copies = 1): Tensor {
  const tensor = graph.inputs?.[name];
  if (!tensor || copies * tensor.size !== values.length) {
    throw new Error(
      `input ${name}: ${values.length} values for the graph's ${tensor?.shape ?? "missing"} tensor`,
    );
  }
  return tensor;
}
