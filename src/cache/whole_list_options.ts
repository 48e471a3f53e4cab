// Options of the strategies that skip the whole block list, by the names of each method's reference
// implementation: diffusers' MagCacheConfig, the authors' TeaCache and EasyCache scripts. MagCache and
// TeaCache take their model-specific figures from the request (mag_ratios, coefficients) or from the model
// directory's calibration for the request's sampler and step count (src/cache/calibration.ts).
import { z } from "zod";
import { findCalibration, type ModelCalibration } from "./calibration.ts";
import type { EasyCacheOptions } from "./easycache.ts";
import { type MagCacheOptions, nearestInterp } from "./magcache.ts";
import { int, nonNegative, separateCfg } from "./option_fields.ts";
import type { SeparateCfgOptions } from "./options.ts";
import type { TeaCacheOptions } from "./teacache.ts";

const fraction = (name: string) => {
  const error = `${name} must be a number in 0..1`;
  return z.number({ error }).min(0, { error }).max(1, { error });
};
const numbers = (name: string, element: z.ZodNumber, what: string) =>
  z.array(element, { error: `${name} must be a list of ${what}` }).min(1, {
    error: `${name} must not be empty`,
  });

export const WHOLE_LIST_SCHEMAS = {
  magcache: z.strictObject({
    strategy: z.literal("magcache"),
    threshold: nonNegative("threshold").default(0.06),
    max_skip_steps: int("max_skip_steps", 0).default(3),
    retention_ratio: fraction("retention_ratio").default(0.2),
    mag_ratios: numbers(
      "mag_ratios",
      z.number({ error: "each of mag_ratios must be a number > 0" }).positive({
        error: "each of mag_ratios must be a number > 0",
      }),
      "numbers > 0",
    ).optional(),
    ...separateCfg,
  }),
  teacache: z.strictObject({
    strategy: z.literal("teacache"),
    rel_l1_thresh: nonNegative("rel_l1_thresh").default(0.4),
    coefficients: numbers(
      "coefficients",
      z.number({ error: "each of coefficients must be a number" }),
      "numbers (highest power first)",
    ).optional(),
    ret_steps: int("ret_steps", 0).default(1),
    ...separateCfg,
  }),
  easycache: z.strictObject({
    strategy: z.literal("easycache"),
    thresh: nonNegative("thresh").default(0.05),
    ret_steps: int("ret_steps", 0).default(10),
    ...separateCfg,
  }),
};

export type WholeListStrategy = keyof typeof WHOLE_LIST_SCHEMAS;
export const WHOLE_LIST_STRATEGIES = Object.keys(WHOLE_LIST_SCHEMAS) as WholeListStrategy[];

export type ParsedWholeList = {
  [K in WholeListStrategy]: z.infer<(typeof WHOLE_LIST_SCHEMAS)[K]>;
}[WholeListStrategy];

interface ResolvedWholeListCommon {
  blocks: number;
  steps: number;
  cfg: SeparateCfgOptions;
  notes: string[];
}

export type ResolvedWholeList =
  | ResolvedWholeListCommon & { strategy: "magcache" } & MagCacheOptions
  | ResolvedWholeListCommon & { strategy: "teacache" } & TeaCacheOptions
  | ResolvedWholeListCommon & { strategy: "easycache" } & EasyCacheOptions;

export interface WholeListContext {
  blocks: number;
  steps: number;
  sampler?: string;
  calibration?: ModelCalibration;
}

/** The rule's options for this request, the calibrated figures included. */
export function resolveWholeList(
  o: ParsedWholeList,
  context: WholeListContext,
  cfg: SeparateCfgOptions,
): ResolvedWholeList {
  const { blocks, steps } = context;
  const notes: string[] = [];
  const sampler = context.sampler ?? "default";
  const common = { blocks, steps, cfg, notes };
  switch (o.strategy) {
    case "magcache": {
      const measured = o.mag_ratios ??
        findCalibration(context.calibration, "magcache", sampler, steps).mag_ratios;
      if (measured.length !== steps) {
        notes.push(
          `mag_ratios: ${measured.length} ratios resampled onto ${steps} steps (nearest, as diffusers)`,
        );
      }
      return {
        ...common,
        strategy: "magcache",
        threshold: o.threshold,
        max_skip_steps: o.max_skip_steps,
        retention_ratio: o.retention_ratio,
        mag_ratios: measured.length === steps ? measured : nearestInterp(measured, steps),
      };
    }
    case "teacache":
      return {
        ...common,
        strategy: "teacache",
        rel_l1_thresh: o.rel_l1_thresh,
        coefficients: o.coefficients ??
          findCalibration(context.calibration, "teacache", sampler, steps).coefficients,
        ret_steps: o.ret_steps,
      };
    case "easycache":
      return { ...common, strategy: "easycache", thresh: o.thresh, ret_steps: o.ret_steps };
  }
}
