// What `deno task bench:pareto` sweeps: each strategy family with its main knob over a range, every other
// option at the reference's default (warmup, limits), so a curve shows what that one knob buys. Families are
// the reference's (DBCache F1B0 with and without a calibrator, DBPrune, the step-mask presets) and the new
// ones (MagCache, TeaCache, EasyCache); the calibrated ones read the model's cache_calibration.json. The
// retention/warm-up of the new ones is their reference's share of the steps (20%).
import type { BenchConfig } from "./cache_configs.ts";

export interface SweepConfig extends BenchConfig {
  /** The curve the point belongs to. */
  family: string;
  /** The knob's value at this point. */
  knob: number | string;
}

export const REFERENCE_FAMILIES = [
  "DBCache F1B0",
  "DBCache F1B0 + TaylorSeer",
  "DBPrune F1B0",
  "DBCache F1B0 + SCM + TaylorSeer",
] as const;

const taylorSeer = { enable_taylorseer: true, n_derivatives: 1 };
const foca = { enable_calibrator: true, calibrator_type: "foca" };

interface Family {
  family: string;
  knob: string;
  values: readonly (number | string)[];
  cache(value: number | string, steps: number): Record<string, unknown>;
}

const fb = (threshold: number, extra = {}) => ({
  strategy: "dbcache",
  Fn: 1,
  Bn: 0,
  residual_diff_threshold: threshold,
  ...extra,
});
const retention = (steps: number) => Math.round(steps / 5);

const FAMILIES: Family[] = [
  {
    family: "DBCache F1B0",
    knob: "residual_diff_threshold",
    values: [0.08, 0.12, 0.16, 0.24, 0.32],
    cache: (v) => fb(v as number),
  },
  {
    family: "DBCache F1B0 + TaylorSeer",
    knob: "residual_diff_threshold",
    values: [0.08, 0.12, 0.16, 0.24, 0.32],
    cache: (v) => fb(v as number, taylorSeer),
  },
  {
    family: "DBCache F1B0 + FoCa",
    knob: "residual_diff_threshold",
    values: [0.08, 0.12, 0.16, 0.24, 0.32],
    cache: (v) => fb(v as number, foca),
  },
  {
    family: "DBPrune F1B0",
    knob: "residual_diff_threshold",
    values: [0.05, 0.1, 0.2, 0.3],
    cache: (v) => ({ strategy: "dbprune", Fn: 1, Bn: 0, residual_diff_threshold: v }),
  },
  {
    family: "DBCache F1B0 + SCM + TaylorSeer",
    knob: "steps_computation_mask",
    values: ["medium", "fast", "ultra"],
    cache: (v) => ({
      ...fb(0.2, taylorSeer),
      steps_computation_mask: v,
      steps_computation_policy: "static",
    }),
  },
  {
    family: "MagCache",
    knob: "threshold",
    values: [0.03, 0.06, 0.12, 0.24, 0.48],
    cache: (v) => ({ strategy: "magcache", threshold: v }),
  },
  {
    family: "TeaCache",
    knob: "rel_l1_thresh",
    values: [0.1, 0.2, 0.4, 0.8, 1.6],
    cache: (v) => ({ strategy: "teacache", rel_l1_thresh: v }),
  },
  {
    family: "EasyCache",
    knob: "thresh",
    values: [0.025, 0.05, 0.1, 0.2, 0.4],
    cache: (v, steps) => ({ strategy: "easycache", thresh: v, ret_steps: retention(steps) }),
  },
];

export const FAMILY_NAMES = FAMILIES.map((f) => f.family);

/** The baseline first, then every family's points; `only` keeps the named families. */
export function sweepConfigs(steps: number, only: readonly string[] | null): SweepConfig[] {
  const families = FAMILIES.filter((f) => only === null || only.includes(f.family));
  return [
    { name: "Baseline", cache: { strategy: "none" }, family: "Baseline", knob: "" },
    ...families.flatMap((f) =>
      f.values.map((value) => ({
        name: `${f.family} (${f.knob} ${value})`,
        cache: f.cache(value, steps),
        family: f.family,
        knob: value,
      }))
    ),
  ];
}

export interface ParetoPoint {
  name: string;
  family: string;
  speedup: number;
  psnr: number;
}

/** The points no other point of `points` beats on both speedup and PSNR (ties kept), fastest last. */
export function paretoFrontier<P extends ParetoPoint>(points: readonly P[]): P[] {
  const dominated = (p: P) =>
    points.some((q) =>
      q !== p && q.speedup >= p.speedup && q.psnr >= p.psnr && (q.speedup > p.speedup || q.psnr > p.psnr)
    );
  return points.filter((p) => !dominated(p)).sort((a, b) => a.speedup - b.speedup);
}

/** Each family's own frontier. */
export function familyFrontiers<P extends ParetoPoint>(points: readonly P[]): Map<string, P[]> {
  const families = new Map<string, P[]>();
  for (const p of points) families.set(p.family, [...(families.get(p.family) ?? []), p]);
  return new Map([...families].map(([family, members]) => [family, paretoFrontier(members)]));
}

/**
 * What deciding costs on the path a request runs: each family at a knob that measures and decides every step
 * but never caches (warm-up 0 where the family has one), against the baseline. Their slowdown is the
 * decision's overhead: measures, readbacks or decision kernels, and the stores a cache keeps.
 */
export function overheadConfigs(): BenchConfig[] {
  const never = 1e-9;
  return [
    { name: "Baseline", cache: { strategy: "none" } },
    { name: "decision only: DBCache F1B0", cache: fb(never, { max_warmup_steps: 0 }) },
    {
      name: "decision only: DBCache F1B0 + TaylorSeer",
      cache: fb(never, { max_warmup_steps: 0, ...taylorSeer }),
    },
    {
      name: "decision only: DBPrune F1B0",
      cache: { strategy: "dbprune", Fn: 1, Bn: 0, residual_diff_threshold: never, max_warmup_steps: 0 },
    },
    {
      name: "decision only: MagCache",
      cache: { strategy: "magcache", threshold: never, retention_ratio: 0 },
    },
    { name: "decision only: TeaCache", cache: { strategy: "teacache", rel_l1_thresh: never } },
    { name: "decision only: EasyCache", cache: { strategy: "easycache", thresh: never, ret_steps: 0 } },
  ];
}
