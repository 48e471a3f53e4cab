// Diffusers' schedulers reduced to numbers: set_timesteps plus every step() written as the coefficients of
// one fused linear update (src/ops/sampler_step.ts runs it). scheduler_config.json's _class_name picks the
// scheduler; an option these coefficients cannot reproduce is refused by name rather than approximated.
import type { z } from "zod";
import { namedCoefficients, type SamplerStepCoefficients } from "../../ops/sampler_step.ts";
import { ddimConfigSchema, ddimSchedule } from "./ddim.ts";
import { dpmSolverMultistepConfigSchema, dpmSolverMultistepSchedule } from "./dpm_solver_multistep.ts";
import { eulerDiscreteConfigSchema, eulerDiscreteSchedule } from "./euler_discrete.ts";
import {
  flowMatchEulerDiscreteConfigSchema,
  flowMatchEulerDiscreteSchedule,
} from "./flow_match_euler_discrete.ts";
import { uniPcMultistepConfigSchema, uniPcMultistepSchedule } from "./unipc_multistep.ts";

/**
 * One denoising step as the fused update the GPU runs (all coefficients are plain numbers; the update is
 * SamplerStepCoefficients: x0 from the sample and the model output, an optional corrector that replaces the
 * sample, then prev_sample from the sample, x0, earlier steps' x0s, the model output and fresh noise).
 */
export interface SchedulerStep extends SamplerStepCoefficients {
  /** The model's timestep input at this step (diffusers' scheduler.timesteps[i], as a number). */
  timestep: number;
  /** model input = inputScale * sample (scale_model_input; 1 where the scheduler does not scale). */
  inputScale: number;
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

/** The config parsed with a scheduler's schema; every issue is named with its value. */
function parseConfig<S extends z.ZodType>(path: string, schema: S, json: unknown): z.output<S> {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new SchedulerConfigError(
      `${path}: ${parsed.error.issues.map((i) => describeIssue(json, i)).join("; ")}`,
    );
  }
  return parsed.data;
}

/** Parses the config with the scheduler's schema, then checks the step count against its training steps. */
function builder<S extends z.ZodType<{ num_train_timesteps: number }>>(
  schema: S,
  build: (config: z.output<S>, numInferenceSteps: number, options: ScheduleOptions, path: string) => Schedule,
): ScheduleBuilder {
  return (path, json, numInferenceSteps, options) => {
    const config = parseConfig(path, schema, json);
    const trainSteps = config.num_train_timesteps;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > trainSteps) {
      throw new SchedulerConfigError(
        `${path}: num_inference_steps ${numInferenceSteps} is not supported; supported: 1..${trainSteps} ` +
          `(num_train_timesteps)`,
      );
    }
    return build(config, numInferenceSteps, options, path);
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
  UniPCMultistepScheduler: builder(uniPcMultistepConfigSchema, (config, steps, { sigmas }, path) => {
    if (sigmas) {
      throw new SchedulerConfigError(`${path}: custom sigmas are not supported by UniPCMultistepScheduler`);
    }
    return uniPcMultistepSchedule(config, steps);
  }),
};

export const SCHEDULER_CLASSES: readonly string[] = Object.keys(BUILDERS);

/** A NaN or infinite coefficient would only surface as a black image; diffusers itself fails or NaNs here. */
function checkFinite(path: string, numInferenceSteps: number, schedule: Schedule): Schedule {
  schedule.steps.forEach((step, i) => {
    const coefficients: [string, number][] = [
      ["timestep", step.timestep],
      ["inputScale", step.inputScale],
      ...namedCoefficients(step),
    ];
    const bad = coefficients.filter(([, v]) => !Number.isFinite(v));
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

/**
 * What the steps keep on the GPU between steps: the earlier x0s they weigh (history slots of a ring) and
 * whether a corrector reads the previous step's sample.
 */
export function scheduleState(schedule: Schedule): { historySlots: number; lastSample: boolean } {
  return {
    historySlots: Math.max(
      0,
      ...schedule.steps.flatMap((s) => [s.next.history.length, s.corrector?.history.length ?? 0]),
    ),
    lastSample: schedule.steps.some((s) => s.corrector !== undefined),
  };
}

/**
 * Wan's pipeline with FlowMatchEulerDiscreteScheduler(num_train_timesteps, shift=flow_shift) in place of the
 * UniPCMultistepScheduler its directory ships (`uniPcConfig`, which must be one createSchedule accepts), with
 * set_timesteps(numInferenceSteps)'s defaults.
 */
export function wanFlowMatchSchedule(
  path: string,
  uniPcConfig: unknown,
  numInferenceSteps: number,
): Schedule {
  const { num_train_timesteps, flow_shift } = parseConfig(path, uniPcMultistepConfigSchema, uniPcConfig);
  const config = { _class_name: "FlowMatchEulerDiscreteScheduler", num_train_timesteps, shift: flow_shift };
  return createSchedule(path, config, numInferenceSteps);
}
