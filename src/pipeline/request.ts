// One generation request, resolved once against the model it names, by the one function that the CLI and
// the server both call: the sampling fields (one zod schema, one set of ranges and messages), the class of
// every image, the size, the sampler the model offers, and the cache options checked against the model's
// block list and the step count. Every failure names the field and what is allowed.
import { z } from "zod";
import { CacheOptionsError, resolveCacheOptions, type ResolvedCacheOptions } from "../cache/options.ts";
import { type ClassLabels, classWords, type ModelCard } from "./model_card.ts";
import { MAX_SEED } from "./noise.ts";

export const LIMITS = {
  steps: { min: 1, max: 1000 },
  guidance: { min: 0, max: 30 },
  seed: { min: 0, max: MAX_SEED },
  shift: { min: 0.01, max: 100 },
  eta: { min: 0, max: 1 },
} as const;

const ranged = (name: keyof typeof LIMITS, integer: boolean) => {
  const { min, max } = LIMITS[name];
  const kind = integer ? "an integer" : "a number";
  const base = z.number({ error: `${name} must be ${kind} in ${min}..${max}` });
  return (integer ? base.int({ error: `${name} must be an integer in ${min}..${max}` }) : base)
    .min(min, { error: `${name} must be in ${min}..${max}` })
    .max(max, { error: `${name} must be in ${min}..${max}` });
};

/** The sampling fields of every front end; absent steps, guidance and sampler take the model's defaults. */
export const samplingSchema = z.strictObject({
  steps: ranged("steps", true).optional(),
  seed: ranged("seed", true).default(0),
  guidance: ranged("guidance", false).optional(),
  sampler: z.string({ error: "sampler must be a string naming one of the model's samplers" }).optional(),
  shift: ranged("shift", false).default(1),
  eta: ranged("eta", false).default(0),
});

export type SamplingInput = z.infer<typeof samplingSchema>;

export interface RequestInput extends SamplingInput {
  /** Class of each image: an id, or a name the model's labels know. */
  labels: (string | number)[];
  /** A strategy name or an object of cache options (src/cache/options.ts). */
  cache: unknown;
  /** "WxH"; the model's own size when absent. */
  size?: string;
  /** Which field the class came from, for messages ("label", "prompt", "class"). */
  labelField?: string;
}

/** What a pipeline runs: everything resolved and checked. */
export interface GenerationRequest {
  /** Class id per image. */
  labels: number[];
  steps: number;
  seed: number;
  guidance: number;
  sampler: string;
  shift: number;
  eta: number;
  cache: ResolvedCacheOptions;
}

export class RequestError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "RequestError";
  }
}

/** Listing every class is only useful for small label sets. */
const LISTED_CLASSES = 20;

/** An id in range, or a name (case-insensitive) of one class; throws naming what is valid. */
export function resolveClass(classes: ClassLabels, label: string | number, field = "label"): number {
  const count = classes.names.length;
  if (typeof label === "number") {
    if (Number.isInteger(label) && label >= 0 && label < count) return label;
  } else {
    const wanted = label.trim().toLowerCase();
    const index = classes.aliases.findIndex((names) => names.some((n) => n.toLowerCase() === wanted));
    if (index >= 0) return index;
  }
  const valid = count <= LISTED_CLASSES
    ? `valid: ${classes.names.join(", ")}` + aliasList(classes)
    : `valid: a class id in 0..${count - 1} or one of its names (e.g. ${
      classes.names.slice(0, 3).join(", ")
    })`;
  throw new RequestError(field, `unknown class ${JSON.stringify(label)}; ${valid}`);
}

function aliasList(classes: ClassLabels): string {
  const others = classWords(classes);
  return others.length > 0 ? ` (or ${others.join(", ")})` : "";
}

function checkSize(card: ModelCard, size: string | undefined): void {
  const own = `${card.size.width}x${card.size.height}`;
  if (size !== undefined && size.trim().toLowerCase() !== own) {
    throw new RequestError("size", `model draws ${own} images only; allowed sizes: ${own}`);
  }
}

export function resolveRequest(card: ModelCard, input: RequestInput): GenerationRequest {
  checkSize(card, input.size);
  const labels = input.labels.map((label) => resolveClass(card.classes, label, input.labelField));
  const sampler = input.sampler ?? card.samplers[0];
  if (!card.samplers.includes(sampler)) {
    throw new RequestError("sampler", `${JSON.stringify(sampler)} is not one of ${card.samplers.join(", ")}`);
  }
  const steps = input.steps ?? card.defaults.steps;
  let cache: ResolvedCacheOptions;
  try {
    const options = typeof input.cache === "string" ? { strategy: input.cache } : input.cache;
    cache = resolveCacheOptions(options, { blocks: card.blocks, steps, channels: card.streamWidth });
  } catch (e) {
    if (e instanceof CacheOptionsError) throw new RequestError("cache", e.message);
    throw e;
  }
  return {
    labels,
    steps,
    seed: input.seed,
    guidance: input.guidance ?? card.defaults.guidance,
    sampler,
    shift: input.shift,
    eta: input.eta,
    cache,
  };
}
