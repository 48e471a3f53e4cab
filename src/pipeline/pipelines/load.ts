// The pipeline a model card names, loaded onto the GPU. Adding a model family means a card reader
// (src/pipeline/model_card.ts), a pipeline class and one line here; the loop, the server and the cache
// strategies do not change.
import type { GpuContext } from "../../gpu/context.ts";
import type { ModelCard } from "../model_card.ts";
import { DitPipeline } from "./dit.ts";
import { FluxPipeline } from "./flux.ts";
import type { ImagePipeline } from "./image_pipeline.ts";
import { MnistDitPipeline } from "./mnist_dit.ts";
import { WanPipeline } from "./wan.ts";

export function loadPipeline(ctx: GpuContext, card: ModelCard): Promise<ImagePipeline> {
  switch (card.pipeline) {
    case "MnistDiT":
      return MnistDitPipeline.load(ctx, card);
    case "DiTPipeline":
      return DitPipeline.load(ctx, card);
    case "FluxPipeline":
      return FluxPipeline.load(ctx, card);
    case "WanPipeline":
      return WanPipeline.load(ctx, card);
  }
}
