// The training noise schedule (betas and alphas_cumprod) as diffusers builds it in float32 torch, and the
// numpy arithmetic the schedulers' set_timesteps share. Each float32 rounding of the reference is reproduced
// (Math.fround) so that tests can hold the coefficients to float32 precision instead of a loose tolerance.
// Only torch's sqrt, log and exp (MKL/SLEEF on the CPU) can still differ by an ulp from correct rounding.
import { z } from "zod";

export const f32 = Math.fround;

/** The config fields every beta-based scheduler shares, with diffusers' defaults. */
export const betaScheduleFields = {
  num_train_timesteps: z.number().int().min(2).default(1000),
  beta_start: z.number().positive().default(0.0001),
  beta_end: z.number().positive().default(0.02),
  beta_schedule: z.enum(["linear", "scaled_linear", "squaredcos_cap_v2"]).default("linear"),
  trained_betas: z.array(z.number()).nullable().default(null),
  rescale_betas_zero_snr: z.boolean().default(false),
};

export type BetaScheduleConfig = z.output<z.ZodObject<typeof betaScheduleFields>>;

/** A schema check: trained_betas (when given) has one beta per training timestep. */
export const trainedBetasFit = {
  check: (c: BetaScheduleConfig) =>
    c.trained_betas === null || c.trained_betas.length === c.num_train_timesteps,
  params: { message: "must list num_train_timesteps betas", path: ["trained_betas"] },
};

/**
 * torch.linspace(start, end, steps, dtype=float32) on the CPU: half the values count up from start, half down
 * from end. The kernel is compiled with FMA contraction, so each value is rounded to float32 once; in float64
 * `start + step * i` is exact for these magnitudes, and storing into the Float32Array is that one rounding.
 */
function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const first = f32(start);
  const last = f32(end);
  const step = f32(f32(last - first) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  return Float32Array.from(
    { length: steps },
    (_, i) => i < halfway ? first + step * i : last - step * (steps - i - 1),
  );
}

/** betas_for_alpha_bar with the cosine alpha_bar: float64 Python math, stored as float32. */
function squaredCosCapV2(steps: number): Float32Array {
  const alphaBar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
  return Float32Array.from(
    { length: steps },
    (_, i) => Math.min(1 - alphaBar((i + 1) / steps) / alphaBar(i / steps), 0.999),
  );
}

/** torch.cumprod on the CPU: the running product is kept in float64, each output rounded to float32. */
function cumprod(values: Float32Array): Float32Array {
  let product = 1;
  return values.map((v) => product *= v);
}

/** rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1), every tensor op in float32. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const sqrtBar = cumprod(betas.map((b) => 1 - b)).map(Math.sqrt);
  const first = sqrtBar[0];
  const last = sqrtBar[sqrtBar.length - 1];
  const scale = f32(first / f32(first - last));
  const bar = sqrtBar.map((s) => f32(f32(s - last) * scale) ** 2);
  return bar.map((b, i) => 1 - (i === 0 ? b : f32(b / bar[i - 1])));
}

/** The scheduler's alphas_cumprod (float32), from its beta schedule. */
export function alphasCumprod(config: BetaScheduleConfig): Float32Array {
  const steps = config.num_train_timesteps;
  let betas: Float32Array;
  if (config.trained_betas !== null) betas = Float32Array.from(config.trained_betas);
  else if (config.beta_schedule === "linear") {
    betas = torchLinspaceF32(config.beta_start, config.beta_end, steps);
  } else if (config.beta_schedule === "scaled_linear") {
    betas = torchLinspaceF32(config.beta_start ** 0.5, config.beta_end ** 0.5, steps).map((b) => b * b);
  } else betas = squaredCosCapV2(steps);
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return cumprod(betas.map((b) => 1 - b));
}

/**
 * alphas_cumprod as the sigma-based schedulers keep it: with zero terminal SNR the last sigma would be
 * infinite, so diffusers sets that alpha_bar to 2^-24.
 */
export function sigmaSchedulerAlphasCumprod(config: BetaScheduleConfig): Float32Array {
  const alphaBars = alphasCumprod(config);
  if (config.rescale_betas_zero_snr) alphaBars[alphaBars.length - 1] = 2 ** -24;
  return alphaBars;
}

/** sqrt((1 - alphas_cumprod) / alphas_cumprod) in float32: the noise level of every training timestep. */
export function trainingSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
}

/** np.linspace in float64: start + i * step, the last value exactly stop. */
export function numpyLinspace(start: number, stop: number, num: number): number[] {
  const step = num > 1 ? (stop - start) / (num - 1) : 0;
  return Array.from({ length: num }, (_, i) => num > 1 && i === num - 1 ? stop : i * step + start);
}

/** np.arange with a float step: numpy fills start + i * delta where delta = (start + step) - start. */
export function numpyArange(start: number, stop: number, step: number): number[] {
  const delta = start + step - start;
  const length = Math.max(0, Math.ceil((stop - start) / step));
  return Array.from({ length }, (_, i) => i < 2 ? start + i * step : start + i * delta);
}

/** np.round: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const rounded = Math.round(x);
  return rounded - x === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

/** np.interp(x, np.arange(len(values)), values): linear between neighbours, clamped at both ends. */
export function interpolateAtIndex(x: number, values: ArrayLike<number>): number {
  const last = values.length - 1;
  if (x >= last) return values[last];
  if (x <= 0) return values[0];
  const low = Math.floor(x);
  if (low === x) return values[low];
  return (values[low + 1] - values[low]) * (x - low) + values[low];
}

/** Karras et al. (2022) sigmas, rho = 7, from sigmaMax down to sigmaMin (float64 numpy). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  const minInvRho = sigmaMin ** (1 / 7);
  const maxInvRho = sigmaMax ** (1 / 7);
  return numpyLinspace(0, 1, steps).map((ramp) => (maxInvRho + ramp * (minInvRho - maxInvRho)) ** 7);
}

/**
 * diffusers' _sigma_to_t: the fractional training timestep whose log sigma a sigma interpolates between.
 * `logSigmas` is np.log of the float32 training sigmas, so it is float32 too, and so is the difference of two
 * of its entries (numpy keeps float32 scalars float32); the rest is float64.
 */
export function sigmaToTimestep(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  logSigmas.forEach((l, i) => {
    if (logSigma - l >= 0) low = i;
  });
  low = Math.min(low, logSigmas.length - 2);
  const weight = (logSigmas[low] - logSigma) / f32(logSigmas[low] - logSigmas[low + 1]);
  const clipped = Math.min(Math.max(weight, 0), 1);
  return (1 - clipped) * low + clipped * (low + 1);
}
