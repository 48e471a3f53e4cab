// Diffusers' schedulers reduced to numbers: set_timesteps plus every step() written as the coefficients of
// one fused linear update (src/ops/sampler_step.ts runs it). scheduler_config.json's _class_name picks the
// scheduler; an option these coefficients cannot reproduce is refused by name rather than approximated.
import type { z } from "zod";
import { ddimConfigSchema, ddimSchedule } from "./ddim.ts";
import { dpmSolverMultistepConfigSchema, dpmSolverMultistepSchedule } from "./dpm_solver_multistep.ts";
import { eulerDiscreteConfigSchema, eulerDiscreteSchedule } from "./euler_discrete.ts";
import {
  flowMatchEulerDiscreteConfigSchema,
  flowMatchEulerDiscreteSchedule,
} from "./flow_match_euler_discrete.ts";

/** One denoising step as the fused update the GPU runs (all coefficients are plain numbers). */
export interface SchedulerStep {
  /** The model's timestep input at this step (diffusers' scheduler.timesteps[i], as a number). */
  timestep: number;
  /** model input = inputScale * sample (scale_model_input; 1 where the scheduler does not scale). */
  inputScale: number;
  /** x0 = x0.sample * sample + x0.model * modelOutput, then clamped to [-clip, clip] when clip is not null. */
  x0: { sample: number; model: number; clip: number | null };
  /**
   * prev_sample = next.sample * sample + next.x0 * x0 + next.previous * previousX0 + next.model * modelOutput
   *             + next.noise * z, where previousX0 is the x0 of the step before (0 weight on the first step)
   *             and z is fresh standard normal noise (0 weight for deterministic steps).
   */
  next: { sample: number; x0: number; previous: number; model: number; noise: number };
}

export interface Schedule {
  steps: SchedulerStep[];
  /** Initial latents = initNoiseSigma * standard normal noise (diffusers' init_noise_sigma). */
  initNoiseSigma: number;
}

export interface ScheduleOptions {
  /** FLUX-style dynamic shifting: passed as set_timesteps(mu=...) when the config has use_dynamic_shifting. */
  mu?: number;
  /** Flow matching: the pipeline's own sigmas, set_timesteps(sigmas=...), one per step (FluxPipeline's). */
  sigmas?: readonly number[];
  /** DDIM's eta (default 0). */
  eta?: number;
}

export class SchedulerConfigError extends Error {}

type ScheduleBuilder = (
  path: string,
  config: unknown,
  numInferenceSteps: number,
  options: ScheduleOptions,
) => Schedule;

function describe(value: unknown): string {
  if (Array.isArray(value)) return `[${value.length} values]`;
  return typeof value === "number" || value === undefined ? String(value) : JSON.stringify(value);
}

function describeIssue(config: unknown, issue: z.core.$ZodIssue): string {
  const value = issue.path.reduce<unknown>(
    (v, key) => (v as Record<PropertyKey, unknown> | null)?.[key],
    config,
  );
  const option = `${issue.path.join(".") || "config"} ${describe(value)}`;
  if (issue.code === "invalid_value") {
    return `${option} is not supported; supported: ${issue.values.map(describe).join(", ")}`;
  }
  return `${option} is invalid: ${issue.message}`;
}

/** Parses the config with the scheduler's schema, then checks the step count against its training steps. */
function builder<S extends z.ZodType<{ num_train_timesteps: number }>>(
  schema: S,
  build: (config: z.output<S>, numInferenceSteps: number, options: ScheduleOptions, path: string) => Schedule,
): ScheduleBuilder {
  return (path, json, numInferenceSteps, options) => {
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new SchedulerConfigError(
        `${path}: ${parsed.error.issues.map((i) => describeIssue(json, i)).join("; ")}`,
      );
    }
    const trainSteps = parsed.data.num_train_timesteps;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > trainSteps) {
      throw new SchedulerConfigError(
        `${path}: num_inference_steps ${numInferenceSteps} is not supported; supported: 1..${trainSteps} ` +
          `(num_train_timesteps)`,
      );
    }
    return build(parsed.data, numInferenceSteps, options, path);
  };
}

const BUILDERS: Record<string, ScheduleBuilder> = {
  DDIMScheduler: builder(ddimConfigSchema, (config, steps, { eta = 0 }, path) => {
    // Beyond 1 the noise variance would exceed what the step leaves for the noise direction (a NaN sqrt).
    if (!(eta >= 0 && eta <= 1)) {
      throw new SchedulerConfigError(`${path}: eta ${eta} is not supported; supported: 0..1`);
    }
    return ddimSchedule(config, steps, eta);
  }),
  DPMSolverMultistepScheduler: builder(dpmSolverMultistepConfigSchema, dpmSolverMultistepSchedule),
  EulerDiscreteScheduler: builder(eulerDiscreteConfigSchema, eulerDiscreteSchedule),
  FlowMatchEulerDiscreteScheduler: builder(
    flowMatchEulerDiscreteConfigSchema,
    (config, steps, { mu, sigmas }, path) => {
      if (config.use_dynamic_shifting && !Number.isFinite(mu)) {
        throw new SchedulerConfigError(`${path}: use_dynamic_shifting needs the pipeline's mu; got ${mu}`);
      }
      if (sigmas && sigmas.length !== steps) {
        throw new SchedulerConfigError(
          `${path}: ${sigmas.length} sigmas for ${steps} steps; give one per step`,
        );
      }
      return flowMatchEulerDiscreteSchedule(config, steps, mu, sigmas);
    },
  ),
};

export const SCHEDULER_CLASSES: readonly string[] = Object.keys(BUILDERS);

/** A NaN or infinite coefficient would only surface as a black image; diffusers itself fails or NaNs here. */
function checkFinite(path: string, numInferenceSteps: number, schedule: Schedule): Schedule {
  schedule.steps.forEach((step, i) => {
    const coefficients = {
      timestep: step.timestep,
      inputScale: step.inputScale,
      "x0.sample": step.x0.sample,
      "x0.model": step.x0.model,
      "x0.clip": step.x0.clip ?? 0,
      ...Object.fromEntries(Object.entries(step.next).map(([k, v]) => [`next.${k}`, v])),
    };
    const bad = Object.entries(coefficients).filter(([, v]) => !Number.isFinite(v));
    if (bad.length > 0) {
      throw new SchedulerConfigError(
        `${path}: step ${i} (timestep ${step.timestep}) of num_inference_steps ${numInferenceSteps} has ` +
          `non-finite coefficients: ${bad.map(([k, v]) => `${k} ${v}`).join(", ")}`,
      );
    }
  });
  if (!Number.isFinite(schedule.initNoiseSigma)) {
    throw new SchedulerConfigError(`${path}: init_noise_sigma ${schedule.initNoiseSigma} is not finite`);
  }
  return schedule;
}

/** `config` is the parsed scheduler_config.json (with `_class_name`); `path` is named in errors. */
export function createSchedule(
  path: string,
  config: unknown,
  numInferenceSteps: number,
  options: ScheduleOptions = {},
): Schedule {
  const name = (config as { _class_name?: unknown } | null)?._class_name;
  const build = typeof name === "string" && Object.hasOwn(BUILDERS, name) ? BUILDERS[name] : undefined;
  if (!build) {
    throw new SchedulerConfigError(
      `${path}: _class_name ${describe(name)} is not supported; supported: ${SCHEDULER_CLASSES.join(", ")}`,
    );
  }
  if (name !== "DDIMScheduler" && options.eta !== undefined && options.eta !== 0) {
    throw new SchedulerConfigError(`${path}: eta ${options.eta} is not supported by ${name}; supported: 0`);
  }
  return checkFinite(path, numInferenceSteps, build(path, config, numInferenceSteps, options));
}
