// What `deno task bench:flux` measures on a FluxTransformer2DModel with a few blocks at FLUX.1's width: the
// first double- and the first single-stream block of the model's own graph, each timed whole and its joint
// attention dispatch alone (so that src/cli/bench/flux_extrapolation.ts can scale the part linear in tokens
// and the quadratic attention apart), the pool bytes each block kind holds, and one forward's outputs after
// those blocks, which PyTorch's are checked against.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, isDispatch, submitDispatches } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import { FluxBlockBuilder } from "../../model/flux/blocks.ts";
import type { FluxTransformerConfig } from "../../model/flux/config.ts";
import { type FluxGraphShape, FluxTransformer } from "../../model/flux/transformer.ts";
import type { DenoiserGraph } from "../../model/denoiser_graph.ts";
import type { Float32Tensor } from "../../model/safetensors_writer.ts";
import { linear } from "../../ops/linear.ts";
import { benchInput, modelSeconds } from "./harness.ts";

/** The label src/ops/attention.ts gives flash attention's dispatches. */
const ATTENTION_KERNEL = "flash_attention";
/** FLUX packs 2x2 latents of an 8x VAE: one token per 16x16 pixels. */
const PIXELS_PER_TOKEN = 16;
/** FLUX.1-dev's usual guidance scale and a mid-schedule timestep, as the check's inputs. */
const GUIDANCE = 3.5;
const TIMESTEP = 0.5;

export type Kind = "double" | "single";

export function fluxShape(size: number, textTokens: number, gridHeight = size / PIXELS_PER_TOKEN) {
  return { batch: 1, gridHeight, gridWidth: size / PIXELS_PER_TOKEN, textTokens };
}

export const imageTokens = (s: FluxGraphShape) => s.gridHeight * s.gridWidth;

export interface GraphBytes {
  /** Pool bytes the whole graph holds. */
  total: number;
  /** Bytes the first block of each kind allocates. */
  block: Record<Kind, number>;
}

/**
 * Builds the graph of `shape`, measuring the pool bytes each block allocates while it is built: a graph keeps
 * every block's intermediates for its lifetime, so the model's memory grows with each kind's count, and the
 * model reports no per-block figure. FluxBlockBuilder's two methods are wrapped for this build only.
 */
function measuredGraph(ctx: GpuContext, model: FluxTransformer, shape: FluxGraphShape) {
  // Idle buffers would be reused and hide allocations.
  ctx.pool.trim();
  const held = () => ctx.pool.stats().bytesHeld;
  const before = held();
  const block = { double: [] as number[], single: [] as number[] };
  const proto = FluxBlockBuilder.prototype;
  const original = { double: proto.double, single: proto.single };
  const wrap = <A extends unknown[]>(kind: Kind, method: (this: FluxBlockBuilder, ...a: A) => Command[]) =>
    function (this: FluxBlockBuilder, ...args: A): Command[] {
      const start = held();
      const commands = method.apply(this, args);
      block[kind].push(held() - start);
      return commands;
    };
  proto.double = wrap("double", original.double);
  proto.single = wrap("single", original.single);
  try {
    const graph = model.graph(shape);
    const bytes: GraphBytes = {
      total: held() - before,
      block: { double: block.double[0], single: block.single[0] },
    };
    return { graph, bytes };
  } finally {
    Object.assign(proto, original);
  }
}

/** Seconds of x [rows, d] W^T + b, W [out, d] in BF16 as FLUX.1 stores it. */
async function bf16LinearSeconds(ctx: GpuContext, rows: number, d: number, out: number, repeat: number) {
  const x = ctx.pool.upload(benchInput(rows * d, 5), [rows, d]);
  const weight = ctx.pool.uploadBytes(new Uint8Array(out * d * 2), [out, d], "bf16");
  const bias = ctx.pool.upload(benchInput(out, 6), [out]);
  const op = linear(ctx, x, weight, { bias });
  try {
    return await modelSeconds(ctx, op.dispatches, repeat);
  } finally {
    op.release();
    for (const t of [x, weight, bias]) t.release();
  }
}

/**
 * The blocks' largest linear alone (the feed-forward's [tokens, D] -> [tokens, 4D]): the kernel at the
 * blocks' own shape and weight type, which the 1024^3 f32 figure of the other benchmarks is not.
 */
async function blockKernel(ctx: GpuContext, tokens: number, d: number, repeat: number) {
  const seconds = await bf16LinearSeconds(ctx, tokens, d, 4 * d, repeat);
  return {
    rows: tokens,
    inFeatures: d,
    outFeatures: 4 * d,
    seconds,
    gflops: 2 * tokens * d * 4 * d / seconds / 1e9,
  };
}

/** The forward's inputs under diffusers' argument names; img_ids and txt_ids follow from the shape. */
function forwardInputs(graph: DenoiserGraph): Record<string, Float32Tensor> {
  const tensor = (shape: readonly number[], data: Float32Array) => ({ shape, data });
  const inputs: Record<string, Float32Tensor> = {
    hidden_states: tensor(graph.x.shape, benchInput(graph.x.size, 1)),
    timestep: tensor([1], new Float32Array([TIMESTEP])),
  };
  for (const [i, [name, t]] of Object.entries(graph.inputs!).entries()) {
    const data = name === "guidance" ? new Float32Array([GUIDANCE]) : benchInput(t.size, 2 + i);
    inputs[name] = tensor(t.shape, data);
  }
  return inputs;
}

function writeInputs(ctx: GpuContext, graph: DenoiserGraph, inputs: Record<string, Float32Tensor>): void {
  ctx.pool.write(graph.x, inputs.hidden_states.data);
  ctx.pool.write(graph.t, inputs.timestep.data);
  for (const [name, t] of Object.entries(graph.inputs!)) ctx.pool.write(t, inputs[name].data);
}

/**
 * One forward from the written inputs, each part submitted alone: both streams after the first double- and
 * the first single-stream block (the timed ones), and the output.
 */
async function forwardOutputs(ctx: GpuContext, graph: DenoiserGraph, doubleBlocks: number) {
  const read = (t: DenoiserGraph["output"]) => readFloats(ctx.gpu, t);
  const outputs: Record<string, Float32Array> = {};
  submitDispatches(ctx.gpu, graph.prologue);
  for (const [k, block] of graph.blocks.entries()) {
    submitDispatches(ctx.gpu, block);
    const kind = k === 0 ? "double" : k === doubleBlocks ? "single" : null;
    if (!kind) continue;
    outputs[`${kind}.image`] = await read(graph.streams!.image);
    outputs[`${kind}.text`] = await read(graph.streams!.text);
  }
  submitDispatches(ctx.gpu, graph.epilogue);
  outputs.sample = await read(graph.output);
  return outputs;
}

export interface BlockRow {
  seconds: number;
  /** The block's joint attention dispatch alone. */
  attentionSeconds: number;
  /** Its AdaLayerNormZero linear(s), which the engine runs in the prologue and diffusers in the block. */
  modulationSeconds: number;
  flops: number;
  attentionFlops: number;
  gflops: number;
  attentionGflops: number;
}

export interface FluxMeasurement {
  loadSeconds: number;
  loadedWeightBytes: number;
  shape: FluxGraphShape & { imageTokens: number };
  double: BlockRow;
  single: BlockRow;
  prologueSeconds: number;
  epilogueSeconds: number;
  kernel: Awaited<ReturnType<typeof blockKernel>>;
  graphBytes: GraphBytes;
  /** The same graph with half the image rows: how each part's bytes grow with image tokens. */
  halfGraphBytes: GraphBytes & { imageTokens: number };
  /** What the forward was given, named as diffusers' arguments, and what it gave. */
  inputs: Record<string, Float32Tensor>;
  outputs: Record<string, Float32Array>;
}

/** Times `block` and its attention dispatches; FLOPs per block from the model's shape count. */
async function blockRow(
  ctx: GpuContext,
  block: Command[],
  flops: { total: number; attention: number },
  modulation: number,
  repeat: number,
): Promise<BlockRow> {
  const attention = block.filter((c) => isDispatch(c) && c.label === ATTENTION_KERNEL);
  if (attention.length === 0) {
    throw new Error(`no ${ATTENTION_KERNEL} dispatch in the block: its label changed`);
  }
  const seconds = await modelSeconds(ctx, block, repeat);
  const attentionSeconds = await modelSeconds(ctx, attention, repeat);
  return {
    seconds,
    attentionSeconds,
    modulationSeconds: modulation,
    flops: flops.total,
    attentionFlops: flops.attention,
    gflops: flops.total / seconds / 1e9,
    attentionGflops: flops.attention / attentionSeconds / 1e9,
  };
}

export async function measureFlux(
  ctx: GpuContext,
  dir: string,
  config: FluxTransformerConfig,
  size: number,
  textTokens: number,
  repeat: number,
): Promise<FluxMeasurement> {
  const loadStarted = performance.now();
  const model = await FluxTransformer.load(ctx, dir, config);
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  try {
    const shape = fluxShape(size, textTokens);
    const { graph, bytes } = measuredGraph(ctx, model, shape);
    const half = fluxShape(size, textTokens, shape.gridHeight / 2);
    const halfGraphBytes = { ...measuredGraph(ctx, model, half).bytes, imageTokens: imageTokens(half) };
    const inputs = forwardInputs(graph);
    writeInputs(ctx, graph, inputs);
    const prologueSeconds = await modelSeconds(ctx, graph.prologue, repeat);
    const d = config.num_attention_heads * config.attention_head_dim;
    const tokens = imageTokens(shape) + textTokens;
    // Both kinds count the same FLOPs (model.flopsPerSample): 12 D^2 multiply-adds per token and one joint
    // attention, 2 x 2 N^2 D (q k^T and p v).
    const flops = { total: model.flopsPerSample(shape) / model.depth, attention: 4 * tokens * tokens * d };
    const doubleMod = 2 * await bf16LinearSeconds(ctx, 1, d, 6 * d, repeat);
    const double = await blockRow(ctx, graph.blocks[0], flops, doubleMod, repeat);
    const singleMod = await bf16LinearSeconds(ctx, 1, d, 3 * d, repeat);
    const single = await blockRow(ctx, graph.blocks[config.num_layers], flops, singleMod, repeat);
    const epilogueSeconds = await modelSeconds(ctx, graph.epilogue, repeat);
    const kernel = await blockKernel(ctx, tokens, d, repeat);
    // The timed runs updated the streams in place again and again; the prologue starts them afresh.
    const outputs = await forwardOutputs(ctx, graph, config.num_layers);
    return {
      loadSeconds,
      loadedWeightBytes: model.weightBytes,
      shape: { ...shape, imageTokens: imageTokens(shape) },
      double,
      single,
      prologueSeconds,
      epilogueSeconds,
      kernel,
      graphBytes: bytes,
      halfGraphBytes,
      inputs,
      outputs,
    };
  } finally {
    model.release();
  }
}
