// The digit classifier of tools/train_mnist_classifier.py, run on the GPU to score generated images:
// conv(1->32, k3 s2 p1)+ReLU -> conv(32->64, k3 s2 p1)+ReLU -> flatten (channels-last) -> fc1(3136->128)+ReLU
// = features (the Frechet distance's space) -> fc2(128->10) = logits. Each convolution is im2col + linear,
// activations stay channels-last [batch, H*W, C], which is the flatten order the script trained with.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, submitDispatches } from "../gpu/kernel.ts";
import { readFloats } from "../gpu/readback.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { linear } from "../ops/linear.ts";
import { im2col } from "../ops/patch.ts";
import { WeightsError } from "./safetensors.ts";
import { loadWeights, type ShapeSpec } from "./weights.ts";

export const CLASSIFIER_DIR = "weights/mnist-classifier";
const IMAGE = 28;
const [C1, C2, FEATURES, CLASSES] = [32, 64, 128, 10];
const CONV = { kernel: 3, stride: 2, padding: 1 };

const SHAPES: ShapeSpec = new Map([
  ["conv1.weight", [C1, 1, 3, 3]],
  ["conv1.bias", [C1]],
  ["conv2.weight", [C2, C1, 3, 3]],
  ["conv2.bias", [C2]],
  ["fc1.weight", [FEATURES, 7 * 7 * C2]],
  ["fc1.bias", [FEATURES]],
  ["fc2.weight", [CLASSES, FEATURES]],
  ["fc2.bias", [CLASSES]],
]);

/**
 * A model's images [n, C, H, W] in [-1, 1] as the classifier reads them: the centred 28x28 (mnist-flux draws
 * 32x32 digits padded by 2 pixels a side), channels averaged (its RGB replicates one gray channel).
 */
export function classifierInput(images: Float32Array, shape: readonly number[]): Float32Array {
  const [n, channels, height, width] = shape;
  if (height < IMAGE || width < IMAGE) {
    throw new Error(`classifierInput: ${height}x${width} images are smaller than the classifier's 28x28`);
  }
  if (channels === 1 && height === IMAGE && width === IMAGE) return images;
  const [top, left] = [(height - IMAGE) >> 1, (width - IMAGE) >> 1];
  const out = new Float32Array(n * IMAGE * IMAGE);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < IMAGE; y++) {
      for (let x = 0; x < IMAGE; x++) {
        let sum = 0;
        for (let c = 0; c < channels; c++) {
          sum += images[((i * channels + c) * height + top + y) * width + left + x];
        }
        out[(i * IMAGE + y) * IMAGE + x] = sum / channels;
      }
    }
  }
  return out;
}

export interface Classification {
  /** [images, 10] */
  logits: Float32Array;
  /** [images, 128] penultimate activations */
  features: Float32Array;
  /** argmax of each image's logits */
  predicted: number[];
}

export class DigitClassifier {
  private constructor(private readonly ctx: GpuContext, private readonly weights: Map<string, Tensor>) {}

  static async load(ctx: GpuContext, dir = CLASSIFIER_DIR): Promise<DigitClassifier> {
    const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    if (config._class_name !== "MnistClassifier") {
      throw new WeightsError(
        `${dir}/config.json: _class_name ${JSON.stringify(config._class_name)} is not MnistClassifier`,
      );
    }
    return new DigitClassifier(ctx, await loadWeights(ctx, dir, SHAPES, { stem: "model" }));
  }

  /** images [n, 1, 28, 28] in [-1, 1] (the DiT's output range). */
  async classify(images: Float32Array): Promise<Classification> {
    const { ctx } = this;
    const n = images.length / (IMAGE * IMAGE);
    if (!Number.isInteger(n) || n < 1) {
      throw new Error(`classify: ${images.length} values are not whole 28x28 images`);
    }
    const w = (name: string) => this.weights.get(name)!;
    const owned: { release(): void }[] = [];
    const own = <T extends { release(): void }>(op: T) => (owned.push(op), op);
    const x = own(ctx.pool.upload(images, [n, 1, IMAGE, IMAGE]));
    const geometry = (channels: number, size: number, layout: "nchw" | "nhwc") =>
      ({ batch: n, channels, height: size, width: size, layout, ...CONV }) as const;
    const cols1 = own(im2col(ctx, x, geometry(1, IMAGE, "nchw")));
    const conv1 = own(
      linear(ctx, cols1.out, w("conv1.weight").view([C1, 9]), { bias: w("conv1.bias"), activation: "relu" }),
    );
    const cols2 = own(im2col(ctx, conv1.out, geometry(C1, IMAGE / 2, "nhwc")));
    const conv2 = own(
      linear(ctx, cols2.out, w("conv2.weight").view([C2, C1 * 9]), {
        bias: w("conv2.bias"),
        activation: "relu",
      }),
    );
    const fc1 = own(
      linear(ctx, conv2.out.view([n, 7 * 7 * C2]), w("fc1.weight"), {
        bias: w("fc1.bias"),
        activation: "relu",
      }),
    );
    const fc2 = own(linear(ctx, fc1.out, w("fc2.weight"), { bias: w("fc2.bias") }));
    try {
      const commands: Command[] = [cols1, conv1, cols2, conv2, fc1, fc2].flatMap((op) => op.dispatches);
      await ctx.kernels.ready();
      submitDispatches(ctx.gpu, commands);
      const logits = await readFloats(ctx.gpu, fc2.out);
      const features = await readFloats(ctx.gpu, fc1.out);
      const predicted = Array.from({ length: n }, (_, i) => {
        const row = logits.subarray(i * CLASSES, (i + 1) * CLASSES);
        return row.indexOf(Math.max(...row));
      });
      return { logits, features, predicted };
    } finally {
      for (const op of owned.reverse()) op.release();
    }
  }

  release(): void {
    for (const t of this.weights.values()) t.release();
    this.weights.clear();
  }
}
