// The generation parameters every front end accepts (CLI flags, HTTP bodies), validated in one place so a
// bad value gets the same message naming the field and its range wherever it comes from.
import { z } from "zod";
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
  const base = integer
    ? z.number({ error: `${name} must be an integer in ${min}..${max}` }).int({
      error: `${name} must be an integer in ${min}..${max}`,
    })
    : z.number({ error: `${name} must be a number in ${min}..${max}` });
  return base.min(min, { error: `${name} must be in ${min}..${max}` }).max(max, {
    error: `${name} must be in ${min}..${max}`,
  });
};

export const samplingSchema = z.strictObject({
  steps: ranged("steps", true).default(28),
  seed: ranged("seed", true).default(0),
  guidance: ranged("guidance", false).default(1.5),
  sampler: z.enum(["euler", "ddim"], { error: 'sampler must be "euler" or "ddim"' }).default("euler"),
  shift: ranged("shift", false).default(1),
  eta: ranged("eta", false).default(0),
});

export type SamplingParams = z.infer<typeof samplingSchema>;

/** "7" or "seven" (any case) -> class index; null when the model has no such class. */
export function resolveClass(
  name: string,
  classNames: readonly string[],
  classWords: readonly string[] = [],
): number | null {
  const wanted = name.trim().toLowerCase();
  const index = classNames.findIndex((c) => c.toLowerCase() === wanted);
  if (index >= 0) return index;
  const word = classWords.findIndex((w) => w.toLowerCase() === wanted);
  return word >= 0 ? word : null;
}

/** One line per problem: "steps: steps must be in 1..1000". */
export function formatIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "request"}: ${i.message}`).join("; ");
}
