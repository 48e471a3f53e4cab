// The checks a request body can only pass once its model is known: the class it names and the cache options
// (whose ranges depend on the model's block count and the request's step count). Each failure is a 400
// naming the field and the valid values.
import { CacheOptionsError, resolveCacheOptions, type ResolvedCacheOptions } from "../cache/options.ts";
import { resolveClass } from "../pipeline/request_schema.ts";
import { ApiError } from "./api_error.ts";
import type { ModelEntry } from "./model_catalog.ts";

export function resolveLabel(model: ModelEntry, label: string | number, field: string): number {
  const { class_names, class_words = [] } = model.config;
  const index = resolveClass(String(label), class_names, class_words);
  if (index !== null) return index;
  const words = class_words.length > 0 ? ` (or ${class_words.join(", ")})` : "";
  throw new ApiError(
    400,
    `${field}: unknown class ${JSON.stringify(label)} for model ${model.id}; valid: ${
      class_names.join(", ")
    }${words}`,
    field,
  );
}

export function resolveCache(input: unknown, model: ModelEntry, steps: number): ResolvedCacheOptions {
  try {
    return resolveCacheOptions(typeof input === "string" ? { strategy: input } : input, {
      blocks: model.config.depth,
      steps,
      channels: model.config.hidden_size,
    });
  } catch (e) {
    if (e instanceof CacheOptionsError) throw new ApiError(400, `cache: ${e.message}`, "cache");
    throw e;
  }
}
