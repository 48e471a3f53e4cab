// The files of a diffusers directory (config.json, scheduler_config.json, model_index.json, a tokenizer's
// files): read, configs then validated by the component's schema, every problem named with the file and field.
import type { z } from "zod";
import { WeightsError } from "./safetensors.ts";

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The file's text; a missing file is a WeightsError naming it. */
export async function readTextFile(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new WeightsError(`${path}: file not found`);
    throw e;
  }
}

export async function readJsonFile(path: string): Promise<unknown> {
  const text = await readTextFile(path);
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
