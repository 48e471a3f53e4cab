// What `deno task calibrate` measures for the calibrated strategies and keeps in the model directory
// (cache_calibration.json): MagCache's magnitude ratios and TeaCache's rescaling polynomial, each for one
// sampler and step count, since both are properties of a model's trajectory under its scheduler. The file
// names the model it was made for, so that a copied file is refused rather than silently wrong.
import { z } from "zod";
import { formatIssues } from "../validation/issues.ts";
import { CacheOptionsError } from "./options_error.ts";

export const CALIBRATION_FILE = "cache_calibration.json";
export const CALIBRATED_STRATEGIES = ["magcache", "teacache"] as const;
export type CalibratedStrategy = (typeof CALIBRATED_STRATEGIES)[number];

const positive = z.number().positive();
const key = {
  sampler: z.string().min(1),
  steps: z.number().int().min(2),
  /** Uncached runs the figures were measured on. */
  runs: z.number().int().min(1),
  created: z.string(),
};
const entrySchema = z.discriminatedUnion("strategy", [
  z.strictObject({ strategy: z.literal("magcache"), ...key, mag_ratios: z.array(positive).min(2) }),
  z.strictObject({ strategy: z.literal("teacache"), ...key, coefficients: z.array(z.number()).min(1) }),
]);
export const calibrationFileSchema = z.strictObject({
  /** The model directory's name when it was calibrated. */
  model: z.string().min(1),
  calibrations: z.array(entrySchema),
});

export type CalibrationEntry = z.infer<typeof entrySchema>;
export type CalibrationFile = z.infer<typeof calibrationFileSchema>;

/** A model's calibrations as its card holds them: the file's contents and the model it was read for. */
export interface ModelCalibration {
  /** The model directory's name. */
  model: string;
  dir: string;
  file: CalibrationFile | null;
}

export function parseCalibrationFile(path: string, json: unknown): CalibrationFile {
  const parsed = calibrationFileSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${path}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

export function calibrateCommand(strategy: CalibratedStrategy, dir: string, sampler: string, steps: number) {
  return `deno task calibrate --model ${dir} --strategy ${strategy} --sampler ${sampler} --steps ${steps}`;
}

/** The entry for this strategy, sampler and step count, or an error that says how to make one. */
export function findCalibration<S extends CalibratedStrategy>(
  calibration: ModelCalibration | undefined,
  strategy: S,
  sampler: string,
  steps: number,
): Extract<CalibrationEntry, { strategy: S }> {
  const where = calibration ? `${calibration.dir}/${CALIBRATION_FILE}` : CALIBRATION_FILE;
  const command = calibrateCommand(strategy, calibration?.dir ?? "DIR", sampler, steps);
  const file = calibration?.file;
  if (file && calibration && file.model !== calibration.model) {
    throw new CacheOptionsError(
      `${strategy}: ${where} was made for model "${file.model}", not "${calibration.model}"; ` +
        `calibrate this model: ${command}`,
    );
  }
  const entry = file?.calibrations.find((c) =>
    c.strategy === strategy && c.sampler === sampler && c.steps === steps
  );
  if (!entry) {
    const have = file?.calibrations.filter((c) => c.strategy === strategy).map((c) =>
      `${c.sampler}/${c.steps}`
    );
    throw new CacheOptionsError(
      `${strategy}: no calibration for sampler ${sampler} at ${steps} steps in ${where}` +
        (have?.length ? ` (it has ${have.join(", ")})` : "") + `; make one: ${command}`,
    );
  }
  return entry as Extract<CalibrationEntry, { strategy: S }>;
}

/** `file` with `entry` added, replacing the entry of the same strategy, sampler and steps. */
export function withCalibration(
  file: CalibrationFile | null,
  model: string,
  entry: CalibrationEntry,
): CalibrationFile {
  const others = (file?.calibrations ?? []).filter((c) =>
    !(c.strategy === entry.strategy && c.sampler === entry.sampler && c.steps === entry.steps)
  );
  return { model, calibrations: [...others, entry] };
}
