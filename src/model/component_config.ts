// config.json (and scheduler_config.json, model_index.json) of a diffusers directory: read, then validated by
// the component's schema, every problem named with the file and the field.
import type { z } from "zod";
import { WeightsError } from "./safetensors.ts";

export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new WeightsError(`${path}: file not found`);
    throw e;
  }
  try {
    return parsePythonJson(text);
  } catch (e) {
    throw new WeightsError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** Bare Infinity, -Infinity and NaN outside strings: what Python's json writes for float("inf") and nan. */
const PYTHON_NUMBER = /("(?:[^"\\]|\\.)*")|(-?Infinity|NaN)/g;
const MARK = "__python_number__:";

/**
 * JSON as Python writes it: diffusers configs hold bare -Infinity (DPM-Solver's lambda_min_clipped), which
 * JSON.parse rejects. Strings are kept as they are; only bare tokens become their numbers.
 */
export function parsePythonJson(text: string): unknown {
  const marked = text.replace(PYTHON_NUMBER, (match, quoted) => quoted ?? `"${MARK}${match}"`);
  return JSON.parse(
    marked,
    (_key, value) =>
      typeof value === "string" && value.startsWith(MARK) ? Number(value.slice(MARK.length)) : value,
  );
}

export function parseConfig<S extends z.ZodType>(path: string, json: unknown, schema: S): z.infer<S> {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new WeightsError(`${path}: ${issues.join("; ")}`);
  }
  return parsed.data;
}

/** `_class_name` of a config, or null when it has none. */
export function className(json: unknown): string | null {
  const name = (json as { _class_name?: unknown } | null)?._class_name;
  return typeof name === "string" ? name : null;
}
