// Precomputed or encoded text embeddings as a text pipeline's graph takes them: each tensor [1 or images,
// ...] checked against the shape it must have, prompts stacked into one tensor, and the rows laid out one per
// image (a batch-1 tensor repeated, as num_images_per_prompt does), the unconditional part after.
import type { Float32Tensor } from "../../model/safetensors.ts";
import { RequestError } from "../request.ts";

/** Throws naming `name` and both shapes unless `tensor` is [1 or images, ...rest]. */
export function checkEmbeddingShape(
  name: string,
  tensor: Float32Tensor | undefined,
  rest: number[],
  images: number,
): Float32Tensor {
  const wanted = `[1 or ${images}, ${rest.join(", ")}]`;
  if (!tensor) throw new RequestError(name, `missing; give ${wanted}`);
  const [batch, ...tail] = tensor.shape;
  if ((batch !== 1 && batch !== images) || tail.join() !== rest.join()) {
    throw new RequestError(name, `shape [${tensor.shape.join(", ")}] does not fit ${wanted}`);
  }
  return tensor;
}

/** Tensors of one row each shape, stacked along the first dimension. */
export function stackRows(parts: readonly Float32Tensor[]): Float32Tensor {
  const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  parts.reduce((offset, p) => (data.set(p.data, offset), offset + p.data.length), 0);
  return { shape: [parts.length, ...parts[0].shape.slice(1)], data };
}

/** [parts x images, ...]: each part's rows, repeated to every image (batch 1) or taken per image. */
export function perImageRows(parts: readonly Float32Tensor[], images: number): Float32Array {
  const size = parts[0].data.length / parts[0].shape[0];
  const out = new Float32Array(parts.length * images * size);
  parts.forEach((part, p) => {
    for (let i = 0; i < images; i++) {
      const row = part.shape[0] === 1 ? 0 : i;
      out.set(part.data.subarray(row * size, (row + 1) * size), (p * images + i) * size);
    }
  });
  return out;
}
