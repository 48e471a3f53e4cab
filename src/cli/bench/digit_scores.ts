// How well a digit model draws what it was asked for, whatever conditions it: the classifier's accuracy on
// the asked digit (overall and per digit) and the Frechet distance of its features against the Gaussian of
// the held-out real digits that tools/train_mnist_classifier.py stored beside it.
import { fitGaussian, frechetDistance, type Gaussian } from "../../metrics/frechet.ts";
import { CLASSIFIER_DIR, type DigitClassifier } from "../../model/classifier.ts";
import { forEachTensor, readSafetensorsHeader } from "../../model/safetensors.ts";

const FEATURES = 128;
const DIGITS = 10;

async function heldOutGaussian(path: string): Promise<Gaussian> {
  const header = await readSafetensorsHeader(path);
  const found = new Map<string, Float32Array>();
  await forEachTensor(header, ["mean", "cov"], (entry, data) => void found.set(entry.name, data));
  return { mean: Float64Array.from(found.get("mean")!), covariance: Float64Array.from(found.get("cov")!) };
}

export interface DigitSummary {
  accuracy: number;
  accuracyPerDigit: number[];
  frechetDistance: number;
}

export class DigitScores {
  readonly #correct = new Array<number>(DIGITS).fill(0);
  readonly #asked = new Array<number>(DIGITS).fill(0);
  readonly #features: Float32Array[] = [];

  constructor(private readonly classifier: DigitClassifier) {}

  /** `images` [n, 1, 28, 28] in [-1, 1], as the classifier reads them; image i was asked to be digits[i]. */
  async add(images: Float32Array, digits: readonly number[]): Promise<void> {
    const scored = await this.classifier.classify(images);
    scored.predicted.forEach((p, i) => {
      this.#asked[digits[i]]++;
      this.#correct[digits[i]] += Number(p === digits[i]);
    });
    this.#features.push(scored.features);
  }

  async summary(): Promise<DigitSummary> {
    const count = this.#asked.reduce((a, b) => a + b, 0);
    const features = new Float32Array(count * FEATURES);
    this.#features.reduce((offset, f) => (features.set(f, offset), offset + f.length), 0);
    return {
      accuracy: this.#correct.reduce((a, b) => a + b, 0) / count,
      accuracyPerDigit: this.#correct.map((c, d) => c / this.#asked[d]),
      frechetDistance: frechetDistance(
        fitGaussian(features, count, FEATURES),
        await heldOutGaussian(`${CLASSIFIER_DIR}/heldout-features.safetensors`),
      ),
    };
  }
}
