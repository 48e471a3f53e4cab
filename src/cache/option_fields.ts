// The zod fields cache options are made of, each failing with a message that names the option and its range.
import { z } from "zod";

export const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => {
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
  const error = `${name} must be an integer ${range}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};

export const nonNegative = (name: string) => {
  const error = `${name} must be a number >= 0`;
  return z.number({ error }).min(0, { error });
};

export const flag = (name: string) => z.boolean({ error: `${name} must be true or false` }).default(false);

/**
 * Separate CFG (cache-dit's enable_separate_cfg): where a pipeline runs the conditional and unconditional
 * passes as separate forwards, each keeps its own cache. null follows the pipeline.
 */
export const separateCfg = {
  enable_separate_cfg: z.boolean({ error: "enable_separate_cfg must be true, false or null" }).nullable()
    .default(null),
  cfg_compute_first: flag("cfg_compute_first"),
  cfg_diff_compute_separate: z.boolean({ error: "cfg_diff_compute_separate must be true or false" })
    .default(true),
};
