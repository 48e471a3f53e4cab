// What `deno task bench:flux` measures of FLUX.1's text encoders at their real widths and a few layers: the
// forward as embeddings + each layer + final norm, each timed alone, one layer's GFLOP/s, the outputs of one
// untimed forward (which transformers' are checked against), and the forward extrapolated to the full depth
// (CLIP-L 12 layers, T5 v1.1 XXL 24) from the median layer, on both sides the same way.
import type { GpuContext } from "../../gpu/context.ts";
import { submitDispatches } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { ClipTextConfig, T5Config } from "../../model/text/config.ts";
import type { TextEncoderGraph } from "../../model/text/text_encoder.ts";
import { median, modelSeconds } from "./harness.ts";

/** CLIP-L's and T5 v1.1 XXL's depths, FLUX.1's text encoders. */
export const FULL_LAYERS = { clip: 12, t5: 24 };

/** What the encoders share that the bench drives: ClipTextModel and T5Encoder. */
interface Encoder<G extends TextEncoderGraph> {
  graph(batch: number, length: number): G;
  writeInputIds(graph: G, ids: Uint32Array): void;
  release(): void;
}

/** Ids spread over the vocabulary; the same formula as tools/flux_random_blocks.py. */
export const tokenIds = (length: number, vocab: number) =>
  Uint32Array.from({ length }, (_, i) => (i * 7919 + 1) % vocab);

/** FLOPs of one layer over `n` tokens: 2 per multiply-add of its linears, and q k^T and p v of attention. */
export const clipLayerFlops = (c: ClipTextConfig, n: number) =>
  2 * n * (4 * c.hidden_size ** 2 + 2 * c.hidden_size * c.intermediate_size) + 4 * n * n * c.hidden_size;

export const t5LayerFlops = (c: T5Config, n: number) => {
  const inner = c.num_heads * c.d_kv;
  // q, k, v, o; wi_0, wi_1 (the gated product) and wo.
  return 2 * n * (4 * c.d_model * inner + 3 * c.d_model * c.d_ff) + 4 * n * n * inner;
};

export interface EncoderMeasurement {
  forwardSeconds: number;
  layerSeconds: number;
  layerFlops: number;
  layerGflops: number;
  outputs: Record<string, Float32Array>;
}

async function forwardOutputs<G extends TextEncoderGraph>(
  ctx: GpuContext,
  graph: G,
  outputs: (g: G) => Record<string, Tensor>,
) {
  submitDispatches(ctx.gpu, [...graph.embeddings, ...graph.layers.flat(), ...graph.final]);
  const read: Record<string, Float32Array> = {};
  for (const [name, tensor] of Object.entries(outputs(graph))) read[name] = await readFloats(ctx.gpu, tensor);
  return read;
}

/** Times `encoder` on `tokens` ids (`flops` per layer), then one forward for its `outputs`; releases it. */
export async function measureEncoder<G extends TextEncoderGraph>(
  ctx: GpuContext,
  encoder: Encoder<G>,
  run: { tokens: number; vocab: number; flops: number; repeat: number },
  outputs: (g: G) => Record<string, Tensor>,
): Promise<EncoderMeasurement> {
  try {
    const graph = encoder.graph(1, run.tokens);
    encoder.writeInputIds(graph, tokenIds(run.tokens, run.vocab));
    const layers: number[] = [];
    for (const layer of graph.layers) layers.push(await modelSeconds(ctx, layer, run.repeat));
    const ends = await modelSeconds(ctx, graph.embeddings, run.repeat) +
      await modelSeconds(ctx, graph.final, run.repeat);
    const layerSeconds = median(layers);
    return {
      forwardSeconds: ends + layers.reduce((a, b) => a + b, 0),
      layerSeconds,
      layerFlops: run.flops,
      layerGflops: run.flops / layerSeconds / 1e9,
      outputs: await forwardOutputs(ctx, graph, outputs),
    };
  } finally {
    encoder.release();
  }
}

/** transformers' side, as tools/flux_random_blocks.py reports it. */
export interface EncoderReference {
  tokens: number;
  forward_seconds: number;
  layer_seconds: number;
}

/** Both sides at the loaded and at the full depth: forward + (full - loaded layers) x the median layer. */
export function encoderRow(
  measured: EncoderMeasurement,
  layers: number,
  fullLayers: number,
  torch: EncoderReference | undefined,
) {
  const full = (forward: number, layer: number) => forward + (fullLayers - layers) * layer;
  const { outputs: _, ...figures } = measured;
  return {
    layers,
    ...figures,
    fullLayers,
    fullForwardSeconds: full(measured.forwardSeconds, measured.layerSeconds),
    torch: torch
      ? {
        forwardSeconds: torch.forward_seconds,
        layerSeconds: torch.layer_seconds,
        fullForwardSeconds: full(torch.forward_seconds, torch.layer_seconds),
      }
      : null,
    forwardVsTorch: torch ? measured.forwardSeconds / torch.forward_seconds : null,
    layerVsTorch: torch ? measured.layerSeconds / torch.layer_seconds : null,
  };
}

export const TEXT_ENCODERS_METHOD =
  "forward = embeddings + each layer + final norm, timed apart; full depth " +
  "= forward + (full layers - loaded layers) x the median layer; PyTorch: its whole forward, and each layer " +
  "timed by forward hooks; layer FLOPs = 2 x tokens x the multiply-adds of its linears + 4 x tokens^2 x width " +
  "(attention)";
