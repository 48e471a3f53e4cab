// FlowMatchEulerDiscreteScheduler (rectified flow: SD3, FLUX) as fused steps: prev = sample + (sigma_next -
// sigma) * v. The timesteps are sigma * num_train_timesteps, shifted towards high noise either by a fixed
// `shift` or, with use_dynamic_shifting, by the pipeline's resolution-dependent `mu`.
import { z } from "zod";
import type { Schedule, SchedulerStep } from "./schedule.ts";
import { f32, numpyLinspace } from "./betas.ts";

export const flowMatchEulerDiscreteConfigSchema = z.looseObject({
  num_train_timesteps: z.number().int().min(2).default(1000),
  shift: z.number().positive().default(1),
  use_dynamic_shifting: z.boolean().default(false),
  // base_shift, max_shift and the image sequence lengths only feed the pipeline's mu.
  invert_sigmas: z.literal(false).default(false),
  shift_terminal: z.number().lt(1).nullable().default(null),
  use_karras_sigmas: z.literal(false).default(false),
  use_exponential_sigmas: z.literal(false).default(false),
  use_beta_sigmas: z.literal(false).default(false),
  time_shift_type: z.enum(["exponential", "linear"]).default("exponential"),
  stochastic_sampling: z.literal(false).default(false),
});

export type FlowMatchEulerDiscreteConfig = z.output<typeof flowMatchEulerDiscreteConfigSchema>;

/**
 * `mu` (set_timesteps(mu=...)) is read only with config.use_dynamic_shifting, and is required then; `custom`
 * sigmas (set_timesteps(sigmas=...)) replace the config's spacing before the shift, as FluxPipeline passes them.
 */
export function flowMatchEulerDiscreteSchedule(
  config: FlowMatchEulerDiscreteConfig,
  numInferenceSteps: number,
  mu: number | undefined,
  custom?: readonly number[],
): Schedule {
  const trainSteps = config.num_train_timesteps;
  // __init__ shifts its float32 sigmas (unless shifting dynamically) and set_timesteps spaces the new sigmas
  // between the first and last of those, then shifts again: the last sigma is shifted twice.
  const shiftF32 = f32(config.shift);
  const initSigma = (sigma: number) =>
    config.use_dynamic_shifting
      ? sigma
      : f32(f32(shiftF32 * sigma) / f32(1 + f32(f32(config.shift - 1) * sigma)));
  const sigmaMax = initSigma(1);
  const sigmaMin = initSigma(f32(1 / trainSteps));
  // Custom sigmas arrive as a float32 array (np.array(sigmas).astype(np.float32)).
  let sigmas = custom
    ? custom.map(f32)
    : numpyLinspace(sigmaMax * trainSteps, sigmaMin * trainSteps, numInferenceSteps).map((t) =>
      t / trainSteps
    );
  if (!config.use_dynamic_shifting) {
    sigmas = sigmas.map((s) => config.shift * s / (1 + (config.shift - 1) * s));
  } else {
    const shift = config.time_shift_type === "exponential" ? Math.exp(mu!) : mu!;
    sigmas = sigmas.map((s) => shift / (shift + (1 / s - 1)));
  }
  if (config.shift_terminal) {
    // stretch_shift_to_terminal: rescale 1 - sigma so that the last sigma lands on shift_terminal.
    const scale = (1 - sigmas[sigmas.length - 1]) / (1 - config.shift_terminal);
    sigmas = sigmas.map((s) => 1 - (1 - s) / scale);
  }
  const sigmasF32 = Float32Array.from([...sigmas, 0]);
  const steps = Array.from(sigmas, (_, i): SchedulerStep => {
    const sigma = sigmasF32[i];
    return {
      timestep: f32(sigma * trainSteps),
      inputScale: 1,
      // Unused by the update; kept as the data prediction (what stochastic_sampling would denoise to).
      x0: { sample: 1, model: -sigma, clip: null },
      next: { sample: 1, x0: 0, history: [], model: f32(sigmasF32[i + 1] - sigma), noise: 0 },
    };
  });
  return { steps, initNoiseSigma: 1 };
}
