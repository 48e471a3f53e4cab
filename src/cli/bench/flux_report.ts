// `deno task bench:flux`'s report: the engine's rows of one run, the whole model extrapolated from them, and
// PyTorch's figures of the same run as ratios (engine seconds / PyTorch seconds), with how far the outputs are.
import type { FluxTransformerConfig } from "../../model/flux/config.ts";
import type { ClipTextConfig, T5Config } from "../../model/text/config.ts";
import type { FluxMeasurement, Kind } from "./flux_blocks.ts";
import { extrapolate } from "./flux_extrapolation.ts";
import type { OutputError } from "./reference_error.ts";
import {
  type EncoderMeasurement,
  type EncoderReference,
  encoderRow,
  FULL_LAYERS,
  TEXT_ENCODERS_METHOD,
} from "./text_encoders.ts";

const FLOPS_METHOD = "FLOPs from shapes, 2 per multiply-add: a block (either kind) = 2 x tokens x 12 D^2 " +
  "(double: q, k, v, out and the 4D feed-forward per stream; single: q, k, v, the 4D MLP and the 5D -> D " +
  "proj_out) + 4 x tokens^2 x D (q k^T and p v of the joint attention); modulation linears not counted";

/** tools/flux_random_blocks.py --bench's report. */
export interface TorchReference {
  blocks_seconds: Record<Kind, number>;
  clip: EncoderReference;
  t5: EncoderReference;
  torch: string;
  threads: number;
  diffusers: string;
  transformers: string;
}

export interface EngineMeasurement {
  adapter: string;
  maxStorageBufferBindingSize: number;
  kernelGflops: number;
  blocks: FluxMeasurement;
  clip: EncoderMeasurement;
  t5: EncoderMeasurement;
}

export interface TorchSide {
  reference: TorchReference;
  errors: Record<string, OutputError>;
}

export interface ReportRun {
  model: string;
  size: number;
  t5Tokens: number;
  repeat: number;
  configs: { flux: FluxTransformerConfig; clip: ClipTextConfig; t5: T5Config };
}

function blockRow(engine: EngineMeasurement, kind: Kind, torch: TorchReference | null) {
  const row = engine.blocks[kind];
  const torchSeconds = torch?.blocks_seconds[kind] ?? null;
  // diffusers' block computes its own modulation; the engine's runs in the prologue.
  const withModulation = row.seconds + row.modulationSeconds;
  return {
    ...row,
    shareOfKernel: row.gflops / engine.blocks.kernel.gflops,
    torchSeconds,
    vsTorch: torchSeconds ? withModulation / torchSeconds : null,
  };
}

export function fluxReport(run: ReportRun, engine: EngineMeasurement, torch: TorchSide | null) {
  const { flux, clip, t5 } = run.configs;
  const { inputs: _, outputs: __, ...blocks } = engine.blocks;
  const reference = torch?.reference ?? null;
  return {
    adapter: engine.adapter,
    maxStorageBufferBindingSize: engine.maxStorageBufferBindingSize,
    model: run.model,
    repeat: run.repeat,
    matmulKernelGflops: engine.kernelGflops,
    flux: {
      width: flux.num_attention_heads * flux.attention_head_dim,
      heads: flux.num_attention_heads,
      headDim: flux.attention_head_dim,
      loadedBlocks: { double: flux.num_layers, single: flux.num_single_layers },
      size: run.size,
      ...blocks,
      double: blockRow(engine, "double", reference),
      single: blockRow(engine, "single", reference),
      flopsMethod: FLOPS_METHOD,
      full: extrapolate(flux, engine.blocks),
    },
    clip: {
      width: clip.hidden_size,
      heads: clip.num_attention_heads,
      tokens: clip.max_position_embeddings,
      ...encoderRow(engine.clip, clip.num_hidden_layers, FULL_LAYERS.clip, reference?.clip),
    },
    t5: {
      width: t5.d_model,
      heads: t5.num_heads,
      dFf: t5.d_ff,
      tokens: run.t5Tokens,
      ...encoderRow(engine.t5, t5.num_layers, FULL_LAYERS.t5, reference?.t5),
    },
    textEncodersMethod: TEXT_ENCODERS_METHOD,
    errors: torch?.errors ?? null,
    torch: reference && {
      torch: reference.torch,
      threads: reference.threads,
      diffusers: reference.diffusers,
      transformers: reference.transformers,
    },
  };
}

export type FluxBenchReport = ReturnType<typeof fluxReport>;
