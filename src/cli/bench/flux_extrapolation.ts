// The whole FLUX.1 transformer (19 double- and 38 single-stream blocks, dev and schnell alike) at 1024x1024
// from the rows src/cli/bench/flux_blocks.ts measures on a model with a few blocks: the model does not fit the
// machines these benchmarks run on, and one step of it on a software adapter would take hours.
import { BYTES_PER_ELEMENT, elementCount } from "../../gpu/tensor.ts";
import type { FluxTransformerConfig } from "../../model/flux/config.ts";
import { fluxTransformerShapes } from "../../model/flux/transformer.ts";
import { gpuDType } from "../../model/weights.ts";
import {
  type BlockRow,
  type FluxMeasurement,
  fluxShape,
  type GraphBytes,
  imageTokens,
} from "./flux_blocks.ts";

/** FLUX.1 dev and schnell, and the size its extrapolated rows are for. */
export const FLUX1 = { double: 19, single: 38, size: 1024 };

export const EXTRAPOLATION_METHOD = [
  `step at ${FLUX1.size}x${FLUX1.size} = prologue + ${FLUX1.double} x double + ${FLUX1.single} x single + ` +
  "epilogue, each from this run's rows;",
  "a block = (its time - its attention's) x r + its attention's time x r^2, r = the ratio of image + text " +
  "tokens: matmuls, norms and RoPE grow with tokens, joint attention with their square;",
  "prologue = (measured prologue - the loaded blocks' modulation linears) x (ratio of the x_embedder + " +
  "context_embedder FLOPs) + every block's modulation linear, each kind timed alone;",
  "epilogue (norm_out, proj_out over image tokens) x (image tokens ratio);",
  `weights = the ${FLUX1.double}+${FLUX1.single}-block model's tensors at this width as the loader holds ` +
  "BF16 (matrices BF16, vectors f32);",
  "activations = pool bytes measured per block kind and for the rest of the graph at two image-token counts, " +
  "fitted linearly in image tokens (the text length is kept), times each kind's count: the graph holds every " +
  "block's intermediates.",
];

/** GPU bytes of the weights of `config` as the loader holds a BF16 checkpoint. */
function bf16WeightBytes(config: FluxTransformerConfig): number {
  let total = 0;
  for (const [name, shape] of fluxTransformerShapes(config)) {
    total += elementCount(shape) * BYTES_PER_ELEMENT[gpuDType(name, "BF16", shape)];
  }
  return total;
}

/** `m`'s bytes as a line in image tokens through its two graphs, at `tokens`. */
function activationBytes(config: FluxTransformerConfig, m: FluxMeasurement, tokens: number) {
  const [at, half] = [m.graphBytes, m.halfGraphBytes];
  const fit = (f: (g: GraphBytes) => number) =>
    f(at) + (tokens - m.shape.imageTokens) * (f(at) - f(half)) / (m.shape.imageTokens - half.imageTokens);
  const perBlock = { double: fit((g) => g.block.double), single: fit((g) => g.block.single) };
  const rest = fit((g) =>
    g.total - config.num_layers * g.block.double - config.num_single_layers * g.block.single
  );
  return { perBlock, total: rest + FLUX1.double * perBlock.double + FLUX1.single * perBlock.single };
}

export function extrapolate(config: FluxTransformerConfig, m: FluxMeasurement) {
  const target = fluxShape(FLUX1.size, m.shape.textTokens);
  const [ni, nt] = [m.shape.imageTokens, m.shape.textTokens];
  const niFull = imageTokens(target);
  const r = (niFull + nt) / (ni + nt);
  const scaled = (total: number, quadratic: number) => (total - quadratic) * r + quadratic * r ** 2;
  const block = (row: BlockRow) => scaled(row.seconds, row.attentionSeconds);
  const embedderFlops = (n: number) => n * config.in_channels + nt * config.joint_attention_dim;
  const loadedModulation = config.num_layers * m.double.modulationSeconds +
    config.num_single_layers * m.single.modulationSeconds;
  // At tiny widths the modulation linears timed alone can outlast the whole measured prologue (submit noise).
  const embedders = Math.max(0, m.prologueSeconds - loadedModulation);
  const breakdown = {
    prologue: embedders * embedderFlops(niFull) / embedderFlops(ni) +
      FLUX1.double * m.double.modulationSeconds + FLUX1.single * m.single.modulationSeconds,
    doubleBlocks: FLUX1.double * block(m.double),
    singleBlocks: FLUX1.single * block(m.single),
    epilogue: m.epilogueSeconds * niFull / ni,
  };
  const stepSeconds = Object.values(breakdown).reduce((a, b) => a + b, 0);
  const flopsPerBlock = scaled(m.double.flops, m.double.attentionFlops);
  const activations = activationBytes(config, m, niFull);
  const weightBytes = bf16WeightBytes({
    ...config,
    num_layers: FLUX1.double,
    num_single_layers: FLUX1.single,
  });
  const d = config.num_attention_heads * config.attention_head_dim;
  return {
    size: FLUX1.size,
    imageTokens: niFull,
    textTokens: nt,
    blocks: { double: FLUX1.double, single: FLUX1.single },
    stepSeconds,
    breakdown,
    flopsPerBlock,
    stepGflops: (FLUX1.double + FLUX1.single) * flopsPerBlock / stepSeconds / 1e9,
    memory: {
      weightBytes,
      activationBytes: activations.total,
      totalBytes: weightBytes + activations.total,
      activationBytesPerBlock: activations.perBlock,
      loadedWeightBytesFromShapes: bf16WeightBytes(config),
      // A single-stream block's MLP over the image tokens, [Ni, 4D] f32: one binding must hold it.
      largestActivationBytes: niFull * 4 * d * BYTES_PER_ELEMENT.f32,
    },
    method: EXTRAPOLATION_METHOD,
  };
}

export type FluxExtrapolation = ReturnType<typeof extrapolate>;
