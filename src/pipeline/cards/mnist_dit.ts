// The embedded MnistDiT: one config.json, no components.
import { type DitConfig } from "../../model/mnist_dit/config.ts";
import type { ClassCard } from "../model_card.ts";

export function mnistCard(dir: string, config: DitConfig): ClassCard {
  return {
    pipeline: "MnistDiT",
    dir,
    config,
    classes: {
      names: config.class_names,
      aliases: config.class_names.map((
        name,
        i,
      ) => [name, ...(config.class_words ? [config.class_words[i]] : [])]),
      nullClass: config.null_class,
    },
    text: null,
    description:
      "A class-conditional DiT trained on the MNIST digits: it draws the digits of its labels only",
    size: { width: config.sample_size, height: config.sample_size },
    sizes: null,
    blocks: config.depth,
    streamWidth: config.hidden_size,
    defaults: { steps: 28, guidance: 1.5 },
    samplers: ["euler", "ddim"],
    cfgPasses: "batched",
    video: null,
  };
}
