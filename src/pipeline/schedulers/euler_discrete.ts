// EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2 without churn) as fused steps: the model sees
// sample / sqrt(sigma^2 + 1), and prev = sample + (sample - x0) / sigma * (sigma_next - sigma) is linear in
// (sample, x0). s_churn is a step() argument in diffusers, not config; these are its s_churn = 0 steps, the
// only ones without added noise and the ones diffusers' pipelines take.
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

export const eulerDiscreteConfigSchema = z.looseObject({
  ...betaScheduleFields,
  prediction_type: z.enum(["epsilon", "v_prediction", "sample", "original_sample"]).default("epsilon"),
  interpolation_type: z.literal("linear").default("linear"),
  use_karras_sigmas: z.boolean().default(false),
  use_exponential_sigmas: z.literal(false).default(false),
  use_beta_sigmas: z.literal(false).default(false),
  sigma_min: z.number().positive().nullable().default(null),
  sigma_max: z.number().positive().nullable().default(null),
  timestep_spacing: z.enum(["linspace", "leading", "trailing"]).default("linspace"),
  timestep_type: z.enum(["discrete", "continuous"]).default("discrete"),
  steps_offset: z.number().int().nonnegative().default(0),
  final_sigmas_type: z.enum(["zero", "sigma_min"]).default("zero"),
}).refine(trainedBetasFit.check, trainedBetasFit.params);

export type EulerDiscreteConfig = z.output<typeof eulerDiscreteConfigSchema>;

/** set_timesteps' float32 timesteps before any sigma conversion. */
function spacedTimesteps(config: EulerDiscreteConfig, numInferenceSteps: number): Float32Array {
  const trainSteps = config.num_train_timesteps;
  switch (config.timestep_spacing) {
    case "linspace":
      return Float32Array.from(numpyLinspace(0, trainSteps - 1, numInferenceSteps).reverse());
    case "leading": {
      const ratio = Math.floor(trainSteps / numInferenceSteps);
      return Float32Array.from(
        { length: numInferenceSteps },
        (_, i) => (numInferenceSteps - 1 - i) * ratio + config.steps_offset,
      );
    }
    case "trailing":
      return Float32Array.from(
        numpyArange(trainSteps, 0, -trainSteps / numInferenceSteps),
        (t) => roundHalfEven(t) - 1,
      );
  }
}

/** set_timesteps: the float32 timesteps and sigmas (one more sigma than timesteps: the final one). */
function timestepsAndSigmas(config: EulerDiscreteConfig, numInferenceSteps: number) {
  const trainSigmas = trainingSigmas(sigmaSchedulerAlphasCumprod(config));
  let timesteps = spacedTimesteps(config, numInferenceSteps);
  let sigmas = Array.from(timesteps, (t) => interpolateAtIndex(t, trainSigmas));
  if (config.use_karras_sigmas) {
    const logSigmas = trainSigmas.map(Math.log);
    sigmas = karrasSigmas(
      config.sigma_min ?? sigmas[sigmas.length - 1],
      config.sigma_max ?? sigmas[0],
      numInferenceSteps,
    );
    timesteps = Float32Array.from(sigmas, (s) => sigmaToTimestep(s, logSigmas));
  }
  const finalSigma = config.final_sigmas_type === "sigma_min" ? trainSigmas[0] : 0;
  const allSigmas = Float32Array.from([...sigmas, finalSigma]);
  // Continuous-time v-prediction models take 0.25 log(sigma) as their timestep input instead.
  if (config.timestep_type === "continuous" && config.prediction_type === "v_prediction") {
    timesteps = allSigmas.slice(0, -1).map((s) => 0.25 * f32(Math.log(s)));
  }
  return { timesteps, sigmas: allSigmas };
}

/** x0 from the sample and the model output at noise level sigma (step()'s pred_original_sample). */
function dataPrediction(config: EulerDiscreteConfig, sigma: number) {
  switch (config.prediction_type) {
    case "epsilon":
      return { sample: 1, model: -sigma, clip: null };
    case "v_prediction": {
      const variance = f32(f32(sigma * sigma) + 1);
      return { sample: 1 / variance, model: f32(-sigma / f32(Math.sqrt(variance))), clip: null };
    }
    case "sample":
    case "original_sample":
      return { sample: 0, model: 1, clip: null };
  }
}

export function eulerDiscreteSchedule(config: EulerDiscreteConfig, numInferenceSteps: number): Schedule {
  const { timesteps, sigmas } = timestepsAndSigmas(config, numInferenceSteps);
  const steps = Array.from(timesteps, (timestep, i): SchedulerStep => {
    const sigma = sigmas[i];
    const dt = f32(sigmas[i + 1] - sigma);
    return {
      timestep,
      inputScale: 1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))),
      x0: dataPrediction(config, sigma),
      next: { sample: 1 + dt / sigma, x0: -dt / sigma, history: [], model: 0, noise: 0 },
    };
  });
  const maxSigma = sigmas.reduce((a, b) => Math.max(a, b));
  // diffusers keeps the older sqrt(sigma_max^2 + 1) for leading spacing and uses sigma_max for the others.
  const initNoiseSigma = config.timestep_spacing === "leading"
    ? f32(Math.sqrt(f32(f32(maxSigma * maxSigma) + 1)))
    : maxSigma;
  return { steps, initNoiseSigma };
}
