// DDIMScheduler (Song et al. 2020) as fused steps. The data prediction x0 and the noise prediction are both
// linear in (sample, model output); x0 may be clipped, but diffusers forms the noise direction from the
// unclipped prediction (use_clipped_model_output=False), so that part goes through next.sample/next.model.
import { z } from "zod";
import type { Schedule, SchedulerStep } from "./schedule.ts";
import {
  alphasCumprod,
  betaScheduleFields,
  f32,
  numpyArange,
  numpyLinspace,
  roundHalfEven,
  trainedBetasFit,
} from "./betas.ts";

export const ddimConfigSchema = z.looseObject({
  ...betaScheduleFields,
  clip_sample: z.boolean().default(true),
  clip_sample_range: z.number().positive().default(1),
  set_alpha_to_one: z.boolean().default(true),
  steps_offset: z.number().int().nonnegative().default(0),
  prediction_type: z.enum(["epsilon", "sample", "v_prediction"]).default("epsilon"),
  thresholding: z.literal(false).default(false),
  timestep_spacing: z.enum(["leading", "trailing", "linspace"]).default("leading"),
}).refine(trainedBetasFit.check, trainedBetasFit.params);

export type DdimConfig = z.output<typeof ddimConfigSchema>;

function ddimTimesteps(config: DdimConfig, numInferenceSteps: number): number[] {
  const trainSteps = config.num_train_timesteps;
  switch (config.timestep_spacing) {
    case "linspace":
      return numpyLinspace(0, trainSteps - 1, numInferenceSteps).map(roundHalfEven).reverse();
    case "leading": {
      const ratio = Math.floor(trainSteps / numInferenceSteps);
      return Array.from({ length: numInferenceSteps }, (_, i) => (numInferenceSteps - 1 - i) * ratio)
        .map((t) => t + config.steps_offset);
    }
    case "trailing":
      return numpyArange(trainSteps, 0, -trainSteps / numInferenceSteps).map((t) => roundHalfEven(t) - 1);
  }
}

/** set_timesteps(numInferenceSteps) and one step(eta) per timestep; eta > 0 adds fresh noise. */
export function ddimSchedule(config: DdimConfig, numInferenceSteps: number, eta: number): Schedule {
  const alphaBars = alphasCumprod(config);
  const finalAlphaBar = config.set_alpha_to_one ? 1 : alphaBars[0];
  // diffusers steps back by a fixed stride even where the timesteps themselves are not evenly spaced
  // (trailing spacing), so the "previous" alpha is not always the next timestep's.
  const stride = Math.floor(config.num_train_timesteps / numInferenceSteps);
  const clip = config.clip_sample ? config.clip_sample_range : null;
  const steps = ddimTimesteps(config, numInferenceSteps).map((timestep): SchedulerStep => {
    // Leading spacing with a large steps_offset can pass the last training timestep (an IndexError in
    // diffusers): the lookup is then undefined, and createSchedule refuses the NaN coefficients.
    const alphaBar = alphaBars[timestep];
    const alphaBarPrev = timestep - stride >= 0 ? alphaBars[timestep - stride] : finalAlphaBar;
    const betaBar = f32(1 - alphaBar);
    const betaBarPrev = f32(1 - alphaBarPrev);
    const sqrtAlphaBar = f32(Math.sqrt(alphaBar));
    const sqrtBetaBar = f32(Math.sqrt(betaBar));
    const variance = f32(f32(betaBarPrev / betaBar) * f32(1 - f32(alphaBar / alphaBarPrev)));
    const std = f32(f32(eta) * f32(Math.sqrt(variance)));
    const direction = f32(Math.sqrt(f32(betaBarPrev - f32(std * std))));
    const x0 = config.prediction_type === "epsilon"
      ? { sample: 1 / sqrtAlphaBar, model: -sqrtBetaBar / sqrtAlphaBar }
      : config.prediction_type === "sample"
      ? { sample: 0, model: 1 }
      : { sample: sqrtAlphaBar, model: -sqrtBetaBar };
    // direction * (the unclipped noise prediction)
    const noiseTerm = config.prediction_type === "epsilon"
      ? { sample: 0, model: direction }
      : config.prediction_type === "sample"
      ? { sample: direction / sqrtBetaBar, model: -direction * sqrtAlphaBar / sqrtBetaBar }
      : { sample: direction * sqrtBetaBar, model: direction * sqrtAlphaBar };
    return {
      timestep,
      inputScale: 1,
      x0: { ...x0, clip },
      next: { ...noiseTerm, x0: f32(Math.sqrt(alphaBarPrev)), history: [], noise: std },
    };
  });
  return { steps, initNoiseSigma: 1 };
}
