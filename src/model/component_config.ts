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
    return JSON.parse(text);
  } catch (e) {
    throw new WeightsError(`${path}: not valid JSON (${(e as Error).message})`);
  }
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
