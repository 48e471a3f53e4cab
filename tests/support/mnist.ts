// The embedded digits model as the tests run it: its pipeline, and requests resolved the way every front
// end resolves them.
import type { GpuContext } from "../../src/gpu/context.ts";
import { readModelCard } from "../../src/pipeline/model_card.ts";
import { MnistDitPipeline } from "../../src/pipeline/pipelines/mnist_dit.ts";
import { type GenerationRequest, resolveRequest } from "../../src/pipeline/request.ts";

export const MNIST_DIR = "weights/mnist-dit";

export async function loadMnist(ctx: GpuContext): Promise<MnistDitPipeline> {
  const card = await readModelCard(MNIST_DIR);
  if (card.pipeline !== "MnistDiT") throw new Error(`${MNIST_DIR} is not the embedded MnistDiT`);
  return await MnistDitPipeline.load(ctx, card);
}

export interface MnistInput {
  labels: number[];
  steps: number;
  seed: number;
  guidance: number;
  sampler?: string;
  eta?: number;
  cache?: unknown;
}

export function mnistRequest(pipeline: MnistDitPipeline, input: MnistInput): GenerationRequest {
  return resolveRequest(pipeline.card, { shift: 1, eta: 0, cache: "none", ...input });
}
