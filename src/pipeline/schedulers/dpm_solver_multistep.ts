// DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" (Lu et al. 2022), orders 1 and 2, as fused
// steps. The solver works on data predictions: x0 is linear in (sample, model output), the first-order update
// combines sample and x0, and the second-order one adds the previous step's x0 through next.history[0].
// Step scalars are float32 torch tensors in diffusers; the sigmas come from float64 numpy, stored as float32.
import { z } from "zod";
import type { Schedule, SchedulerStep } from "./schedule.ts";
import {
  betaScheduleFields,
  f32,
  interpolateAtIndex,
  karrasSigmas,
  numpyArange,
  numpyLinspace,
  roundHalfEven,
  sigmaSchedulerAlphasCumprod,
  sigmaToTimestep,
  trainedBetasFit,
  trainingSigmas,
} from "./betas.ts";

export const dpmSolverMultistepConfigSchema = z.looseObject({
  ...betaScheduleFields,
  solver_order: z.literal([1, 2]).default(2),
  prediction_type: z.enum(["epsilon", "sample", "v_prediction"]).default("epsilon"),
  thresholding: z.literal(false).default(false),
  algorithm_type: z.literal("dpmsolver++").default("dpmsolver++"),
  solver_type: z.enum(["midpoint", "heun"]).default("midpoint"),
  lower_order_final: z.boolean().default(true),
  euler_at_final: z.boolean().default(false),
  use_karras_sigmas: z.boolean().default(false),
  use_exponential_sigmas: z.literal(false).default(false),
  use_beta_sigmas: z.literal(false).default(false),
  use_lu_lambdas: z.literal(false).default(false),
  use_flow_sigmas: z.literal(false).default(false),
  use_dynamic_shifting: z.literal(false).default(false),
  final_sigmas_type: z.enum(["zero", "sigma_min"]).default("zero"),
  // -Infinity (no clipping) is not JSON; the config reader has to map Python's bare -Infinity to it.
  lambda_min_clipped: z.number().or(z.literal(-Infinity)).default(-Infinity),
  variance_type: z.literal(null).default(null),
  timestep_spacing: z.enum(["linspace", "leading", "trailing"]).default("linspace"),
  steps_offset: z.number().int().nonnegative().default(0),
}).refine(trainedBetasFit.check, trainedBetasFit.params);

export type DpmSolverMultistepConfig = z.output<typeof dpmSolverMultistepConfigSchema>;

/** log(alpha_t) - log(sigma_t) of each training timestep, float32 as diffusers' lambda_t. */
function trainingLambdas(alphaBars: Float32Array): Float32Array {
  return alphaBars.map((a) => f32(Math.log(f32(Math.sqrt(a)))) - f32(Math.log(f32(Math.sqrt(f32(1 - a))))));
}

function spacedTimesteps(
  config: DpmSolverMultistepConfig,
  numInferenceSteps: number,
  last: number,
): number[] {
  switch (config.timestep_spacing) {
    case "linspace":
      return numpyLinspace(0, last - 1, numInferenceSteps + 1).map(roundHalfEven).reverse().slice(0, -1);
    case "leading": {
      const ratio = Math.floor(last / (numInferenceSteps + 1));
      return Array.from({ length: numInferenceSteps }, (_, i) => (numInferenceSteps - i) * ratio)
        .map((t) => t + config.steps_offset);
    }
    case "trailing": {
      const ratio = config.num_train_timesteps / numInferenceSteps;
      return numpyArange(last, 0, -ratio).map((t) => roundHalfEven(t) - 1);
    }
  }
}

/** set_timesteps: the integer timesteps and the float32 sigmas (one more than timesteps: the final sigma). */
function timestepsAndSigmas(
  config: DpmSolverMultistepConfig,
  numInferenceSteps: number,
  alphaBars: Float32Array,
) {
  const trainSigmas = trainingSigmas(alphaBars);
  // lambda_min_clipped keeps the solver off the last training timesteps, whose lambda (half the log SNR)
  // plunges for cosine schedules: they are cut from the spacing.
  const clipped = trainingLambdas(alphaBars).filter((l) => l < config.lambda_min_clipped).length;
  let timesteps = spacedTimesteps(config, numInferenceSteps, config.num_train_timesteps - clipped);
  let sigmas = timesteps.map((t) => interpolateAtIndex(t, trainSigmas));
  if (config.use_karras_sigmas) {
    const logSigmas = trainSigmas.map(Math.log);
    sigmas = karrasSigmas(trainSigmas[0], trainSigmas[trainSigmas.length - 1], numInferenceSteps);
    // diffusers rounds the fractional timesteps except for squaredcos_cap_v2, whose int64 cast truncates.
    const toInteger = config.beta_schedule === "squaredcos_cap_v2" ? Math.trunc : roundHalfEven;
    timesteps = sigmas.map((s) => toInteger(sigmaToTimestep(s, logSigmas)));
  }
  const finalSigma = config.final_sigmas_type === "sigma_min" ? trainSigmas[0] : 0;
  return { timesteps, sigmas: Float32Array.from([...sigmas, finalSigma]) };
}

/** _sigma_to_alpha_sigma_t and lambda = log(alpha) - log(sigma), in float32. */
function noiseLevel(sigma: number) {
  const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  const sigmaT = f32(sigma * alpha);
  return { alpha, sigma: sigmaT, lambda: f32(f32(Math.log(alpha)) - f32(Math.log(sigmaT))) };
}

/** convert_model_output for dpmsolver++: x0 from the sample and the model output at noise level `level`. */
function dataPrediction(config: DpmSolverMultistepConfig, level: ReturnType<typeof noiseLevel>) {
  switch (config.prediction_type) {
    case "epsilon":
      return { sample: 1 / level.alpha, model: -level.sigma / level.alpha, clip: null };
    case "sample":
      return { sample: 0, model: 1, clip: null };
    case "v_prediction":
      return { sample: level.alpha, model: -level.sigma, clip: null };
  }
}

export function dpmSolverMultistepSchedule(
  config: DpmSolverMultistepConfig,
  numInferenceSteps: number,
): Schedule {
  const { timesteps, sigmas } = timestepsAndSigmas(
    config,
    numInferenceSteps,
    sigmaSchedulerAlphasCumprod(config),
  );
  const count = timesteps.length;
  const steps = timesteps.map((timestep, i): SchedulerStep => {
    const current = noiseLevel(sigmas[i]);
    const target = noiseLevel(sigmas[i + 1]);
    const h = f32(target.lambda - current.lambda);
    const expMinusH = f32(Math.exp(-h));
    const firstOrderWeight = f32(target.alpha * f32(expMinusH - 1));
    const next = {
      sample: f32(target.sigma / current.sigma),
      x0: -firstOrderWeight,
      history: [] as number[],
      model: 0,
      noise: 0,
    };
    // A zero final sigma makes h infinite, where only the first-order update is defined; short schedules
    // (< 15 steps) also end first order when lower_order_final is set.
    const lowerOrderFinal = i === count - 1 &&
      (config.euler_at_final || (config.lower_order_final && count < 15) ||
        config.final_sigmas_type === "zero");
    if (config.solver_order === 2 && i > 0 && !lowerOrderFinal) {
      const previous = noiseLevel(sigmas[i - 1]);
      const inverseR0 = f32(1 / f32(f32(current.lambda - previous.lambda) / h));
      // The second-order term derivativeWeight * D1, D1 = (x0 - previousX0) / r0, splits over x0 and previousX0.
      const derivativeWeight = config.solver_type === "midpoint"
        ? -f32(0.5 * firstOrderWeight)
        : f32(target.alpha * f32(f32(f32(expMinusH - 1) / h) + 1));
      next.x0 += derivativeWeight * inverseR0;
      next.history = [-derivativeWeight * inverseR0];
    }
    return { timestep, inputScale: 1, x0: dataPrediction(config, current), next };
  });
  return { steps, initNoiseSigma: 1 };
}
