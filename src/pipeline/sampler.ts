// Samplers for a flow-matching model that predicts velocity v = noise - x0 on the path
// x_t = (1 - t) x0 + t noise (FLUX convention: t = 1 is pure noise). Every sampler step is the same fused
// update x <- a x + b v + c z (z fresh noise), so one GPU kernel serves all samplers; this file only
// computes the per-step coefficients on the CPU.

import type { Schedule } from "./schedulers/schedule.ts";

export type SamplerName = "euler" | "ddim";

export interface SamplerOptions {
  sampler: SamplerName;
  steps: number;
  /** FLUX/SD3 timestep shift: t' = s t / (1 + (s - 1) t); 1 leaves the grid uniform. */
  shift?: number;
  /** DDIM stochasticity: 0 is deterministic (and then equals Euler on this linear path), 1 is DDPM-like. */
  eta?: number;
}

export interface SamplerStep {
  /** Model input time of this step. */
  t: number;
  /** Time after the update. */
  tNext: number;
  a: number;
  b: number;
  /** Weight of fresh standard-normal noise; 0 for deterministic steps. */
  c: number;
}

/** t_0 = 1 > t_1 > ... > t_steps = 0 on a uniform grid, then shifted. */
export function timeGrid(steps: number, shift = 1): number[] {
  return Array.from({ length: steps + 1 }, (_, i) => {
    const t = 1 - i / steps;
    return (shift * t) / (1 + (shift - 1) * t);
  });
}

function eulerStep(t: number, tNext: number): SamplerStep {
  return { t, tNext, a: 1, b: tNext - t, c: 0 };
}

/**
 * DDIM on x_t = alpha x0 + sigma eps with alpha = 1 - t, sigma = t. From v: x0 = x - t v and
 * eps = x + (1 - t) v; x' = alpha' x0 + sqrt(sigma'^2 - c^2) eps + c z with
 * c = eta sigma' sqrt(1 - (alpha sigma' / (alpha' sigma))^2), the DDIM posterior written for any schedule.
 */
function ddimStep(t: number, tNext: number, eta: number): SamplerStep {
  const [alpha, sigma, alphaNext, sigmaNext] = [1 - t, t, 1 - tNext, tNext];
  const ratio = alphaNext > 0 && sigma > 0 ? (alpha * sigmaNext) / (alphaNext * sigma) : 0;
  const c = eta * sigmaNext * Math.sqrt(Math.max(0, 1 - ratio * ratio));
  const k = Math.sqrt(Math.max(0, sigmaNext * sigmaNext - c * c));
  return { t, tNext, a: alphaNext + k, b: k * (1 - t) - alphaNext * t, c };
}

export function samplerSteps(options: SamplerOptions): SamplerStep[] {
  const grid = timeGrid(options.steps, options.shift ?? 1);
  return grid.slice(0, -1).map((t, i) =>
    options.sampler === "ddim" ? ddimStep(t, grid[i + 1], options.eta ?? 0) : eulerStep(t, grid[i + 1])
  );
}

/**
 * The embedded flow model's samplers as a scheduler Schedule: its timestep input is t itself (the model
 * scales it), the update needs no data prediction (x' = a x + b v + c z) and the noise starts at sigma 1.
 */
export function flowSchedule(options: SamplerOptions): Schedule {
  return {
    initNoiseSigma: 1,
    steps: samplerSteps(options).map((s) => ({
      timestep: s.t,
      inputScale: 1,
      x0: { sample: 0, model: 0, clip: null },
      next: { sample: s.a, x0: 0, history: [], model: s.b, noise: s.c },
    })),
  };
}
