// From a route's fields to a Submission, all checked before anything is queued: the request resolved
// against its model (src/pipeline/request.ts), the uploaded tensors decoded and checked against it
// (embedding shapes, latents for the size), and the steps whose partial images a stream shows. Every
// failure is a 400 naming the field (for a tensor, its name), as the route spells it.
import { decodeFloat32Tensors, type Float32Tensor, WeightsError } from "../../model/safetensors.ts";
import { latentShape, type ModelCard } from "../../pipeline/model_card.ts";
import {
  EMBEDDING_NAMES,
  embeddingsRequest,
  givenEmbeddings,
} from "../../pipeline/pipelines/flux_conditioning.ts";
import { givenWanEmbeddings } from "../../pipeline/pipelines/wan_conditioning.ts";
import {
  type GenerationRequest,
  RequestError,
  type RequestInput,
  resolveRequest,
} from "../../pipeline/request.ts";
import { ApiError } from "../api_error.ts";
import type { Submission } from "../generation_service.ts";
import type { ModelEntry } from "../model_catalog.ts";

const TENSOR_NAMES: readonly string[] = [...EMBEDDING_NAMES, "latents"];

/** What a route read from its body, by the pipeline's names. */
export interface Given {
  /** resolveRequest's fields but the conditioning, which comes from `label`, `prompt` and `tensors`. */
  sampling: Omit<RequestInput, "labels" | "prompts" | "embeddings" | "labelField">;
  n: number;
  label?: string | number;
  prompt?: string;
  /** The field that named the class or prompt, when the route decides it (OpenAI's prompt names a class). */
  labelField?: string;
  /** The route's names of pipeline fields it spells otherwise (OpenAI's true_cfg_scale for true_cfg). */
  fieldNames?: Record<string, string>;
  /** A base64 safetensors file. */
  tensors?: string;
  partialImages: number;
  /** Partial images come only in a stream. */
  streamed: boolean;
  layout: Submission["layout"];
  /** The file a video model's frames are written to (POST /v1/videos); the image routes give none. */
  videoFormat?: Submission["videoFormat"];
}

interface Tensors {
  embeddings?: Record<string, Float32Tensor>;
  latents?: Float32Tensor;
}

function decodeTensors(base64: string): Tensors {
  let tensors: Map<string, Float32Tensor>;
  try {
    tensors = decodeFloat32Tensors(Uint8Array.fromBase64(base64), "tensors");
  } catch (e) {
    if (e instanceof SyntaxError) throw new ApiError(400, `tensors: not base64 (${e.message})`, "tensors");
    if (e instanceof WeightsError) throw new ApiError(400, e.message, "tensors");
    throw e;
  }
  const unknown = [...tensors.keys()].find((name) => !TENSOR_NAMES.includes(name));
  if (unknown !== undefined) {
    throw new ApiError(
      400,
      `tensors: "${unknown}" is not a tensor this API takes; allowed: ${TENSOR_NAMES.join(", ")}`,
      "tensors",
    );
  }
  const embeddings = EMBEDDING_NAMES.filter((name) => tensors.has(name));
  return {
    embeddings: embeddings.length > 0
      ? Object.fromEntries(embeddings.map((name) => [name, tensors.get(name)!]))
      : undefined,
    latents: tensors.get("latents"),
  };
}

/** `count` steps spread evenly before the last (whose image is the result): where partial images decode. */
export function previewSteps(steps: number, count: number): number[] {
  const after = Array.from({ length: count }, (_, k) => Math.round(((k + 1) * steps) / (count + 1)) - 1);
  return [...new Set(after)].filter((step) => step >= 0 && step < steps - 1);
}

/** The field a refusal names: what the model cannot take, or else what it needs. */
function conditioningField(card: ModelCard, given: Given, embeddings: boolean): string {
  if (card.classes) return given.prompt !== undefined ? "prompt" : embeddings ? "tensors" : "label";
  return given.label !== undefined ? "label" : "prompt";
}

const shapeOf = (shape: readonly number[]) => `[${shape.join(", ")}]`;

/** Throws naming both shapes unless `latents` is [images, ...the model's latents at the size]. */
function checkLatents(card: ModelCard, request: GenerationRequest, latents: Float32Tensor): void {
  const wanted = [request.images, ...latentShape(card, request.size)];
  if (latents.shape.join() === wanted.join()) return;
  const { width, height } = request.size;
  throw new RequestError(
    "latents",
    `shape ${shapeOf(latents.shape)} does not fit ${shapeOf(wanted)} (${request.images} image(s) at ` +
      `${width}x${height})`,
  );
}

/** A RequestError as a 400 naming the field as the route spells it. */
function refusing<T>(fieldNames: Record<string, string>, resolve: () => T): T {
  try {
    return resolve();
  } catch (e) {
    if (!(e instanceof RequestError)) throw e;
    const field = fieldNames[e.field] ?? e.field;
    throw new ApiError(400, field + e.message.slice(e.field.length), field);
  }
}

/** A video model only through the video route, and the video route only for video models. */
function checkRoute(model: ModelEntry, given: Given): void {
  if (model.card.video && given.videoFormat === undefined) {
    throw new ApiError(400, `model: ${model.id} draws videos: send it to POST /v1/videos`, "model");
  }
  if (!model.card.video && given.videoFormat !== undefined) {
    throw new ApiError(
      400,
      `model: ${model.id} draws images, not videos: send it to POST /v1/images/generations or /v1/generate`,
      "model",
    );
  }
}

export function resolveSubmission(model: ModelEntry, given: Given): Submission {
  checkRoute(model, given);
  if (given.partialImages > 0 && !given.streamed) {
    throw new ApiError(400, "partial_images: partial images come only in a stream", "partial_images");
  }
  const { embeddings, latents } = given.tensors === undefined ? {} : decodeTensors(given.tensors);
  const card = model.card;
  const fill = <T>(value: T | undefined) =>
    value === undefined ? undefined : new Array<T>(given.n).fill(value);
  return refusing(given.fieldNames ?? {}, () => {
    const request = resolveRequest(card, {
      ...given.sampling,
      labels: fill(given.label),
      prompts: fill(given.prompt),
      embeddings: embeddings && embeddingsRequest(embeddings, given.n),
      labelField: given.labelField ?? conditioningField(card, given, embeddings !== undefined),
    });
    if (embeddings && card.pipeline === "FluxPipeline") givenEmbeddings(card, request, embeddings);
    if (embeddings && card.pipeline === "WanPipeline") givenWanEmbeddings(card, request, embeddings);
    if (latents) checkLatents(card, request, latents);
    const previews = previewSteps(request.steps, given.partialImages);
    const { layout, videoFormat } = given;
    return { model, request, layout, previews, embeddings, latents: latents?.data, videoFormat };
  });
}
