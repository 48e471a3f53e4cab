// The cache request every front end accepts (cache-strategies.md, option by option with the reference's
// names), validated in two passes: parseCacheOptions needs nothing but the request, resolveCacheOptions also
// checks what needs the model and the step count. Both fail before any GPU work with a message naming the
// option and its allowed range.
import { z } from "zod";
import { formatIssues } from "../validation/issues.ts";
import type { DecisionOptions } from "./decision.ts";
import { SCM_PRESET_NAMES, scmMask } from "./scm.ts";
import { CacheOptionsError } from "./options_error.ts";
import { flag, int, nonNegative, separateCfg } from "./option_fields.ts";
import type { ModelCalibration } from "./calibration.ts";
import {
  type ParsedWholeList,
  type ResolvedWholeList,
  resolveWholeList,
  WHOLE_LIST_SCHEMAS,
  WHOLE_LIST_STRATEGIES,
} from "./whole_list_options.ts";

export { CacheOptionsError };

const blockIds = (name: string) =>
  z.array(int(`each of ${name}`, 0), { error: `${name} must be a list of block indices` });
const PRESET = /^F(\d+)B(\d+)$/;
const preset = z.string().regex(PRESET, { error: 'preset must look like "F8B0" (F<Fn>B<Bn>)' });

const CALIBRATOR_TYPES = ["taylorseer", "foca", "dmd"] as const;
const SVD_PRECISIONS = ["low", "medium", "high"] as const;
const DMD_KWARGS = ["history", "rank", "ridge", "n_derivatives", "svd_precision"];
/** DMD's hyper-parameters by cache-dit's DMDCalibrator names (calibrator_kwargs); defaults 6, 0, 1e-8, 1. */
const dmdKwargs = z.strictObject({
  history: int("calibrator_kwargs.history", 1, 16).optional(),
  rank: int("calibrator_kwargs.rank (0 = chosen from the spectrum)", 0).optional(),
  ridge: nonNegative("calibrator_kwargs.ridge").optional(),
  n_derivatives: int("calibrator_kwargs.n_derivatives", 0, 8).optional(),
  svd_precision: z.enum(SVD_PRECISIONS, {
    error: `calibrator_kwargs.svd_precision must be ${SVD_PRECISIONS.map((p) => `"${p}"`).join(", ")}`,
  }).optional(),
}, {
  error: (issue) =>
    issue.code === "unrecognized_keys"
      ? `unknown calibrator_kwargs ${issue.keys.map((k) => `"${k}"`).join(", ")}; valid: ${
        DMD_KWARGS.join(", ")
      }`
      : `calibrator_kwargs must be an object with any of ${DMD_KWARGS.join(", ")}`,
});
const optionalFlag = (name: string) => z.boolean({ error: `${name} must be true or false` }).optional();
const calibratorCacheType = (name: string) =>
  z.enum(["residual", "hidden_states"], { error: `${name} must be "residual" or "hidden_states"` })
    .optional();

const warmupAndTaylorSeer = {
  residual_diff_threshold: nonNegative("residual_diff_threshold").default(0.08),
  max_warmup_steps: int("max_warmup_steps", 0).default(8),
  warmup_interval: int("warmup_interval", 1).default(1),
  /** 0.2.x name: max_warmup_steps with interval 1. */
  warmup_steps: int("warmup_steps", 0).optional(),
  // The calibrator: each option also under cache-dit's generic name (resolveCalibrator); defaults false,
  // false, "residual".
  enable_taylorseer: optionalFlag("enable_taylorseer"),
  enable_encoder_taylorseer: optionalFlag("enable_encoder_taylorseer"),
  taylorseer_cache_type: calibratorCacheType("taylorseer_cache_type"),
  /** TaylorSeer's order (DMD's fallback order, as calibrator_kwargs.n_derivatives); FoCa has none. */
  n_derivatives: int("n_derivatives", 0, 8).default(1),
  calibrator_type: z.enum(CALIBRATOR_TYPES, {
    error: 'calibrator_type must be "taylorseer", "foca" or "dmd"',
  }).default("taylorseer"),
  calibrator_kwargs: dmdKwargs.optional(),
  enable_calibrator: optionalFlag("enable_calibrator"),
  enable_encoder_calibrator: optionalFlag("enable_encoder_calibrator"),
  calibrator_cache_type: calibratorCacheType("calibrator_cache_type"),
  ...separateCfg,
};

const dbcacheFamily = {
  ...warmupAndTaylorSeer,
  max_cached_steps: int("max_cached_steps (-1 = no limit)", -1).default(-1),
  max_continuous_cached_steps: int("max_continuous_cached_steps (-1 = no limit)", -1).default(-1),
  max_accumulated_residual_diff: nonNegative("max_accumulated_residual_diff").nullable().default(null),
  Bn_compute_blocks_ids: blockIds("Bn_compute_blocks_ids").optional(),
  non_compute_blocks_diff_threshold: nonNegative("non_compute_blocks_diff_threshold").default(0.08),
  downsample_factor: int("downsample_factor", 1).default(1),
  steps_computation_mask: z.union([
    z.enum(SCM_PRESET_NAMES),
    z.array(z.union([z.literal(0), z.literal(1)])),
  ], { error: `steps_computation_mask must be one of ${SCM_PRESET_NAMES.join(", ")} or a list of 0/1` })
    .optional(),
  // "static": the mask alone decides, so its 0 steps cache whatever residual_diff_threshold says (0
  // included: the threshold only gates measured diffs), as in the reference's gate order.
  steps_computation_policy: z.enum(["static", "dynamic"], {
    error: 'steps_computation_policy must be "static" or "dynamic"',
  }).default("dynamic"),
};

const SCHEMAS = {
  none: z.strictObject({ strategy: z.literal("none") }),
  fbcache: z.strictObject({
    strategy: z.literal("fbcache"),
    ...dbcacheFamily,
    max_cached_steps: int("max_cached_steps (-1 = no limit)", -1).default(8),
  }),
  dbcache: z.strictObject({
    strategy: z.literal("dbcache"),
    preset: preset.optional(),
    Fn: int("Fn", 1).optional(),
    Bn: int("Bn", 0).optional(),
    ...dbcacheFamily,
  }),
  dbprune: z.strictObject({
    strategy: z.literal("dbprune"),
    preset: preset.optional(),
    Fn: int("Fn", 0).optional(),
    Bn: int("Bn", 0).optional(),
    ...warmupAndTaylorSeer,
    non_prune_blocks_ids: blockIds("non_prune_blocks_ids").optional(),
    max_pruned_steps: int("max_pruned_steps (-1 = no limit)", -1).default(-1),
    enable_dynamic_prune_threshold: flag("enable_dynamic_prune_threshold"),
    dynamic_prune_threshold_relax_ratio: nonNegative("dynamic_prune_threshold_relax_ratio").default(1.25),
    /** Default 2 * residual_diff_threshold. */
    max_dynamic_prune_threshold: nonNegative("max_dynamic_prune_threshold").optional(),
    residual_cache_update_interval: int("residual_cache_update_interval", 1).default(1),
  }),
  ...WHOLE_LIST_SCHEMAS,
};

export type CacheStrategyName = keyof typeof SCHEMAS;
export const CACHE_STRATEGIES = Object.keys(SCHEMAS) as CacheStrategyName[];

/** Where Fn/Bn come from when not given: 1.x DBCache default, the F1B0 of FBCache, DBPrune's preset. */
const DEFAULT_SPLIT: Record<Split["strategy"], [number, number]> = {
  dbcache: [8, 0],
  fbcache: [1, 0],
  dbprune: [8, 8],
};

export type ParsedCacheOptions = {
  [K in CacheStrategyName]: z.infer<(typeof SCHEMAS)[K]>;
}[CacheStrategyName];

/** Option names a strategy accepts, in the order the doc lists them. */
export function cacheOptionNames(strategy: CacheStrategyName): string[] {
  return Object.keys(SCHEMAS[strategy].shape);
}

export function parseCacheOptions(input: unknown): ParsedCacheOptions {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new CacheOptionsError("cache options must be an object with a strategy");
  }
  const strategy = (input as Record<string, unknown>).strategy ?? "none";
  if (typeof strategy !== "string" || !(CACHE_STRATEGIES as string[]).includes(strategy)) {
    throw new CacheOptionsError(
      `cache strategy ${JSON.stringify(strategy)} is unknown; valid strategies: ${
        CACHE_STRATEGIES.join(", ")
      }`,
    );
  }
  const name = strategy as CacheStrategyName;
  const valid = cacheOptionNames(name);
  const unknown = Object.keys(input).filter((k) => !valid.includes(k));
  if (unknown.length > 0) {
    throw new CacheOptionsError(
      `unknown ${name} option${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `"${k}"`).join(", ")}; ` +
        `valid options for ${name}: ${valid.join(", ")}`,
    );
  }
  const parsed = SCHEMAS[name].safeParse({ ...input, strategy: name });
  if (!parsed.success) throw new CacheOptionsError(`${name}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

/** What a calibrator predicts (the skipped span's residual or the state after it), and for which streams. */
interface CalibratorTarget {
  cache_type: "residual" | "hidden_states";
  /** The text stream too (enable_encoder_taylorseer). */
  encoder: boolean;
}

export interface TaylorSeerOptions extends CalibratorTarget {
  type: "taylorseer";
  n_derivatives: number;
}

/** FoCa has no hyper-parameters. */
export interface FoCaOptions extends CalibratorTarget {
  type: "foca";
}

/** DMD (src/cache/calibrators/dmd.ts): cache-dit's calibrator_kwargs, resolved. */
export interface DmdOptions extends CalibratorTarget {
  type: "dmd";
  /** Computed-step snapshots kept (1..16). */
  history: number;
  /** SVD truncation rank; 0: the singular values above 1e-4 of the leading one. */
  rank: number;
  ridge: number;
  /** The Taylor fallback's order (below 4 uniformly spaced snapshots). */
  n_derivatives: number;
}

export type CalibratorOptions = TaylorSeerOptions | FoCaOptions | DmdOptions;

export interface SeparateCfgOptions {
  /** Whether the two CFG passes keep separate caches: true exactly when the pipeline runs them separately. */
  separate: boolean;
  /** The unconditional pass runs first in each step. */
  computeFirst: boolean;
  /** false: the unconditional pass decides on the conditional pass' diff of the same step. */
  diffSeparate: boolean;
}

interface ResolvedCommon {
  /** Block count and step count the options were resolved against. */
  blocks: number;
  steps: number;
  Fn: number;
  Bn: number;
  residual_diff_threshold: number;
  max_warmup_steps: number;
  warmup_interval: number;
  calibrator: CalibratorOptions | null;
  cfg: SeparateCfgOptions;
  /** What resolution changed and why (preset clamps); reported in the stats. */
  notes: string[];
}

export interface ResolvedDbCache extends ResolvedCommon, DecisionOptions {
  strategy: "dbcache" | "fbcache";
  /** Indices into the B span (0..Bn-1) always run on cached steps; null: all of B runs. */
  Bn_compute_blocks_ids: number[] | null;
  non_compute_blocks_diff_threshold: number;
  downsample_factor: number;
}

export interface ResolvedDbPrune extends ResolvedCommon {
  strategy: "dbprune";
  /** Absolute block indices that always run (besides the first Fn and last Bn). */
  non_prune_blocks_ids: number[];
  max_pruned_steps: number;
  enable_dynamic_prune_threshold: boolean;
  dynamic_prune_threshold_relax_ratio: number;
  max_dynamic_prune_threshold: number;
  residual_cache_update_interval: number;
}

export type ResolvedCacheOptions =
  | { strategy: "none"; notes: string[] }
  | ResolvedDbCache
  | ResolvedDbPrune
  | ResolvedWholeList;

export interface CacheContext {
  /** Transformer blocks of the model. */
  blocks: number;
  /** Sampler steps of the request. */
  steps: number;
  /** Channels of the image stream (its last dimension), over which diffs are taken. */
  channels: number;
  /** How the pipeline runs classifier-free guidance: both halves in one forward (default) or two forwards. */
  cfgPasses?: "batched" | "separate";
  /** The pipeline's name, for messages. */
  pipeline?: string;
  /** The request's sampler: calibrations are per sampler and step count. */
  sampler?: string;
  /** The model directory's calibrations (MagCache, TeaCache). */
  calibration?: ModelCalibration;
}

/** Parses `input` and checks it against the model's block count and the request's step count. */
export function resolveCacheOptions(input: unknown, context: CacheContext): ResolvedCacheOptions {
  const o = parseCacheOptions(input);
  if (o.strategy === "none") return { strategy: "none", notes: [] };
  if (isWholeList(o)) return resolveWholeList(o, context, resolveSeparateCfg(o, context));
  const { blocks, steps } = context;
  const notes: string[] = [];
  const [Fn, Bn] = resolveSplit(o, blocks, notes);
  if (o.warmup_steps !== undefined && ("max_warmup_steps" in (input as object))) {
    throw new CacheOptionsError(
      `${o.strategy}: give warmup_steps (0.2.x) or max_warmup_steps + warmup_interval, not both`,
    );
  }
  const common: ResolvedCommon = {
    blocks,
    steps,
    Fn,
    Bn,
    residual_diff_threshold: o.residual_diff_threshold,
    max_warmup_steps: o.warmup_steps ?? o.max_warmup_steps,
    warmup_interval: o.warmup_steps !== undefined ? 1 : o.warmup_interval,
    calibrator: resolveCalibrator(o, input as object, notes),
    cfg: resolveSeparateCfg(o, context),
    notes,
  };
  if (o.strategy === "dbprune") {
    const ids = o.non_prune_blocks_ids ?? [];
    checkIds("non_prune_blocks_ids", ids, blocks, "block indices of the model");
    return {
      ...common,
      strategy: "dbprune",
      non_prune_blocks_ids: ids,
      max_pruned_steps: o.max_pruned_steps,
      enable_dynamic_prune_threshold: o.enable_dynamic_prune_threshold,
      dynamic_prune_threshold_relax_ratio: o.dynamic_prune_threshold_relax_ratio,
      max_dynamic_prune_threshold: o.max_dynamic_prune_threshold ?? 2 * o.residual_diff_threshold,
      residual_cache_update_interval: o.residual_cache_update_interval,
    };
  }
  if (o.downsample_factor > context.channels) {
    throw new CacheOptionsError(
      `${o.strategy}: downsample_factor ${o.downsample_factor} is more than the model's ${context.channels} channels; ` +
        `allowed 1..${context.channels} (the diff reads every k-th channel)`,
    );
  }
  const ids = o.Bn_compute_blocks_ids ?? null;
  if (ids) checkIds("Bn_compute_blocks_ids", ids, Bn, `indices into the last Bn = ${Bn} blocks`);
  const mask = resolveMask(o.steps_computation_mask, steps);
  return {
    ...common,
    max_warmup_steps: maskedWarmup(common.max_warmup_steps, mask, notes),
    strategy: o.strategy,
    max_cached_steps: o.max_cached_steps,
    max_continuous_cached_steps: o.max_continuous_cached_steps,
    max_accumulated_residual_diff: o.max_accumulated_residual_diff,
    mask,
    steps_computation_policy: o.steps_computation_policy,
    Bn_compute_blocks_ids: ids,
    non_compute_blocks_diff_threshold: o.non_compute_blocks_diff_threshold,
    downsample_factor: o.downsample_factor,
  };
}

/**
 * The calibrator of enable_taylorseer or its generic name enable_calibrator (cache-dit 1.x), likewise for the
 * encoder flag and the cache type; both names of one option must agree. `given`: the request as sent, to
 * tell an n_derivatives the request gave from the default.
 */
function resolveCalibrator(o: Split, given: object, notes: string[]): CalibratorOptions | null {
  const spelled = <T>(name: string, generic: string, value: T | undefined, genericValue: T | undefined) => {
    if (value !== undefined && genericValue !== undefined && value !== genericValue) {
      throw new CacheOptionsError(
        `${o.strategy}: ${name} ${JSON.stringify(value)} and ${generic} ${JSON.stringify(genericValue)} ` +
          "are one option under two names; give one of them (or the same value)",
      );
    }
    return value ?? genericValue;
  };
  const enabled = spelled("enable_taylorseer", "enable_calibrator", o.enable_taylorseer, o.enable_calibrator);
  const encoder = spelled(
    "enable_encoder_taylorseer",
    "enable_encoder_calibrator",
    o.enable_encoder_taylorseer,
    o.enable_encoder_calibrator,
  ) ?? false;
  const cache_type = spelled(
    "taylorseer_cache_type",
    "calibrator_cache_type",
    o.taylorseer_cache_type,
    o.calibrator_cache_type,
  ) ?? "residual";
  const kwargs = o.calibrator_kwargs;
  if (kwargs && o.calibrator_type !== "dmd") {
    throw new CacheOptionsError(
      `${o.strategy}: calibrator_kwargs are DMD's (calibrator_type "dmd"); ${o.calibrator_type} takes ` +
        (o.calibrator_type === "foca" ? "no hyper-parameters" : "its order as n_derivatives"),
    );
  }
  if (!enabled) {
    if (o.calibrator_type !== "taylorseer") {
      notes.push(
        `calibrator_type ${o.calibrator_type}: no calibrator runs without enable_calibrator (or enable_taylorseer) true`,
      );
    }
    return null;
  }
  if (o.calibrator_type === "taylorseer") {
    return { type: "taylorseer", cache_type, n_derivatives: o.n_derivatives, encoder };
  }
  if (o.calibrator_type === "dmd") {
    return resolveDmd(o, kwargs ?? {}, "n_derivatives" in given, notes, cache_type, encoder);
  }
  if ("n_derivatives" in given) {
    notes.push(
      `n_derivatives ${o.n_derivatives} is ignored: FoCa has no hyper-parameters (cache-dit's FoCa calibrator ` +
        "ignores it too)",
    );
  }
  return { type: "foca", cache_type, encoder };
}

/**
 * DMD's options from calibrator_kwargs; its n_derivatives is also the request's n_derivatives (default 1
 * for both; `topLevel`: the request gave it), and the two must agree.
 */
function resolveDmd(
  o: Split,
  kwargs: z.infer<typeof dmdKwargs>,
  topLevel: boolean,
  notes: string[],
  cache_type: CalibratorTarget["cache_type"],
  encoder: boolean,
): DmdOptions {
  const given = kwargs.n_derivatives;
  if (topLevel && given !== undefined && given !== o.n_derivatives) {
    throw new CacheOptionsError(
      `${o.strategy}: n_derivatives ${o.n_derivatives} and calibrator_kwargs.n_derivatives ${given} are ` +
        "one option under two names (DMD's fallback order); give one of them (or the same value)",
    );
  }
  const history = kwargs.history ?? 6;
  if (history < 4) {
    notes.push(
      `calibrator_kwargs.history ${history}: the DMD fit needs 4 snapshots, so every forecast is the ` +
        "Taylor fallback",
    );
  }
  if (kwargs.svd_precision === "low") {
    notes.push(
      'calibrator_kwargs.svd_precision "low" is ignored: the fit takes exact singular values (from the ' +
        "window's Gram matrix), not cache-dit's randomised SVD",
    );
  }
  return {
    type: "dmd",
    cache_type,
    encoder,
    history,
    rank: kwargs.rank ?? 0,
    ridge: kwargs.ridge ?? 1e-8,
    n_derivatives: given ?? o.n_derivatives,
  };
}

/** cache-dit's rules for the three options, and whether this pipeline's CFG passes can be cached apart. */
function resolveSeparateCfg(o: Split | ParsedWholeList, context: CacheContext): SeparateCfgOptions {
  const separate = context.cfgPasses === "separate";
  if (o.enable_separate_cfg !== null && o.enable_separate_cfg !== separate) {
    throw new CacheOptionsError(
      separate
        ? `${o.strategy}: enable_separate_cfg false is not supported by ${context.pipeline}, whose CFG passes are ` +
          "separate forwards: each keeps its own cache; allowed: true or null"
        : `${o.strategy}: enable_separate_cfg true needs CFG passes that are separate forwards; ` +
          `${context.pipeline ?? "this pipeline"} batches them in one forward; allowed: false or null`,
    );
  }
  if (o.cfg_compute_first && o.cfg_diff_compute_separate) {
    throw new CacheOptionsError(
      `${o.strategy}: cfg_compute_first true needs cfg_diff_compute_separate false (as in cache-dit): ` +
        "a diff computed first cannot be shared with the pass that follows",
    );
  }
  if (o.strategy === "dbprune" && !o.cfg_diff_compute_separate) {
    throw new CacheOptionsError(
      "dbprune: cfg_diff_compute_separate false is not supported (each block's prune decision is taken on " +
        "its own pass); allowed: true",
    );
  }
  if (isWholeList(o) && !o.cfg_diff_compute_separate) {
    throw new CacheOptionsError(
      `${o.strategy}: cfg_diff_compute_separate false is not supported (each pass decides on its own ` +
        "measures); allowed: true",
    );
  }
  return { separate, computeFirst: o.cfg_compute_first, diffSeparate: o.cfg_diff_compute_separate };
}

type Split = Extract<ParsedCacheOptions, { strategy: "dbcache" | "fbcache" | "dbprune" }>;

function isWholeList(o: ParsedCacheOptions): o is ParsedWholeList {
  return (WHOLE_LIST_STRATEGIES as string[]).includes(o.strategy);
}

/**
 * Explicit Fn/Bn must fit the model (an error otherwise); a preset or default split that does not fit is
 * clamped, keeping at least one block between F and B and the preset's F:B proportion, and noted.
 */
function resolveSplit(o: Split, blocks: number, notes: string[]): [number, number] {
  const explicit = o.strategy === "fbcache" ? {} : { Fn: o.Fn, Bn: o.Bn };
  const presetName = "preset" in o ? o.preset : undefined;
  const match = presetName ? PRESET.exec(presetName) : null;
  const [presetFn, presetBn] = match ? [Number(match[1]), Number(match[2])] : DEFAULT_SPLIT[o.strategy];
  const minFn = o.strategy === "dbprune" ? 0 : 1;
  if (match && presetFn < minFn) {
    throw new CacheOptionsError(`${o.strategy}: preset ${presetName} needs Fn >= ${minFn}`);
  }
  const Fn = explicit.Fn ?? presetFn;
  const Bn = explicit.Bn ?? presetBn;
  if (Fn + Bn <= blocks) return [Fn, Bn];
  if (explicit.Fn !== undefined || explicit.Bn !== undefined) {
    throw new CacheOptionsError(
      `${o.strategy}: Fn ${Fn} + Bn ${Bn} = ${Fn + Bn} is more than the model's ${blocks} blocks; ` +
        `Fn + Bn must be in ${minFn}..${blocks}`,
    );
  }
  const budget = Math.max(blocks - 1, minFn);
  const Fc = Math.min(budget, Math.max(minFn, Math.round((Fn * budget) / (Fn + Bn))));
  const Bc = budget - Fc;
  const source = match ? `preset ${presetName}` : `default F${Fn}B${Bn}`;
  notes.push(`${source} asks for ${Fn + Bn} blocks but the model has ${blocks}: clamped to F${Fc}B${Bc}`);
  return [Fc, Bc];
}

function checkIds(name: string, ids: readonly number[], count: number, what: string): void {
  const bad = ids.filter((id) => id >= count);
  if (bad.length > 0) {
    const range = count > 0 ? `0..${count - 1}` : "empty (there are none)";
    throw new CacheOptionsError(`${name} [${bad.join(", ")}] out of range: ${what}, allowed ${range}`);
  }
}

/**
 * With a mask, the warmup ends at the mask's first 0, as in the reference: the mask's first cache step is not
 * overruled by a longer warmup (the preset masks open with 4 to 8 compute steps at 28 steps; the default warmup is 8).
 */
function maskedWarmup(warmup: number, mask: readonly (0 | 1)[] | null, notes: string[]): number {
  if (!mask) return warmup;
  const leading = mask.indexOf(0) < 0 ? mask.length : mask.indexOf(0);
  if (leading >= warmup) return warmup;
  notes.push(`max_warmup_steps ${warmup} ends at the mask's first cache step: ${leading}`);
  return leading;
}

function resolveMask(
  mask: (typeof SCM_PRESET_NAMES)[number] | (0 | 1)[] | undefined,
  steps: number,
): (0 | 1)[] | null {
  if (mask === undefined) return null;
  if (typeof mask === "string") return scmMask(mask, steps);
  if (mask.length !== steps) {
    throw new CacheOptionsError(
      `steps_computation_mask has ${mask.length} entries but the request has ${steps} steps; ` +
        `give exactly ${steps} (or a preset: ${SCM_PRESET_NAMES.join(", ")}, scaled to any step count)`,
    );
  }
  return mask;
}
