// The prompts the benchmarks ask a text-to-digit model (weights/mnist-flux): its prompts.json's held-out
// phrasings, which training never saw; image i asks the digit i % 10 in that digit's next phrasing, so every
// digit cycles through all of its own.
import { z } from "zod";
import { WeightsError } from "../../model/safetensors.ts";

const promptsSchema = z.object({
  heldout: z.array(z.object({ prompt: z.string().min(1), digit: z.number().int().min(0).max(9) })),
});

/** Each digit's held-out phrasings; null without a prompts.json; a WeightsError naming a bad one. */
export async function heldOutPrompts(dir: string): Promise<string[][] | null> {
  const path = `${dir}/prompts.json`;
  let parsed;
  try {
    parsed = promptsSchema.safeParse(JSON.parse(await Deno.readTextFile(path)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new WeightsError(`${path}: ${(e as Error).message}`);
  }
  if (!parsed.success) throw new WeightsError(`${path}: no heldout list of {prompt, digit}`);
  const byDigit = Array.from({ length: 10 }, (_, d) => parsed.data.heldout.filter((h) => h.digit === d));
  const missing = byDigit.findIndex((list) => list.length === 0);
  if (missing >= 0) throw new WeightsError(`${path}: no held-out phrasing of the digit ${missing}`);
  return byDigit.map((list) => list.map((h) => h.prompt));
}

/** The held-out phrasings, which this benchmark cannot run without. */
export async function requireHeldOutPrompts(dir: string): Promise<string[][]> {
  const byDigit = await heldOutPrompts(dir);
  if (!byDigit) throw new WeightsError(`${dir}/prompts.json: file not found (the held-out phrasings to ask)`);
  return byDigit;
}

export function heldOutPrompt(byDigit: string[][], i: number): { prompt: string; digit: number } {
  const [digit, k] = [i % 10, Math.floor(i / 10)];
  return { prompt: byDigit[digit][k % byDigit[digit].length], digit };
}

export function benchPrompts(byDigit: string[][], perDigit: number): { prompt: string; digit: number }[] {
  return Array.from({ length: 10 * perDigit }, (_, i) => heldOutPrompt(byDigit, i));
}
