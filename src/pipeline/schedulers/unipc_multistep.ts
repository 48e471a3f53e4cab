// UniPCMultistepScheduler (Zhao et al. 2023) with flow sigmas, as Wan2.1 ships it, as fused steps: orders 1
// to 3, the B(h) predictor UniP and corrector UniC on data predictions (predict_x0), flow_prediction's
// x0 = sample - sigma * v. Each step() is linear in the sample, this step's x0, the x0s of earlier steps and
// the previous step's corrected sample: the corrector replaces the sample first (SchedulerStep.corrector),
// from the previous corrected sample and the x0s (this step's included, itself from the uncorrected sample),
// and the predictor then steps from the corrected sample. Step scalars are float32 torch tensors in diffusers;
// the sigmas come from float64 numpy, stored as float32.
import { z } from "zod";
import type { Schedule, SchedulerStep } from "./schedule.ts";
import { f32, numpyLinspace } from "./betas.ts";

export const uniPcMultistepConfigSchema = z.looseObject({
  // The beta schedule fields are read only without flow sigmas, which are all this implements.
  num_train_timesteps: z.number().int().min(2).default(1000),
  solver_order: z.literal([1, 2, 3]).default(2),
  prediction_type: z.literal("flow_prediction"),
  thresholding: z.literal(false).default(false),
  predict_x0: z.literal(true).default(true),
  // diffusers maps the DPM-Solver names onto bh2.
  solver_type: z.enum(["bh1", "bh2", "midpoint", "heun", "logrho"]).default("bh2"),
  lower_order_final: z.boolean().default(true),
  disable_corrector: z.array(z.number().int()).default([]),
  solver_p: z.literal(null).default(null),
  use_karras_sigmas: z.literal(false).default(false),
  use_exponential_sigmas: z.literal(false).default(false),
  use_beta_sigmas: z.literal(false).default(false),
  use_flow_sigmas: z.literal(true),
  flow_shift: z.number().positive().default(1),
  use_dynamic_shifting: z.literal(false).default(false),
  shift_terminal: z.literal(null).default(null),
  // Unused with flow sigmas (the timesteps are the sigmas'), but diffusers refuses other values.
  timestep_spacing: z.enum(["linspace", "leading", "trailing"]).default("linspace"),
  final_sigmas_type: z.enum(["zero", "sigma_min"]).default("zero"),
});

export type UniPcMultistepConfig = z.output<typeof uniPcMultistepConfigSchema>;

/** set_timesteps with use_flow_sigmas: integer timesteps and float32 sigmas (one more: the final sigma). */
function flowTimestepsAndSigmas(config: UniPcMultistepConfig, numInferenceSteps: number) {
  const trainSteps = config.num_train_timesteps;
  const shift = config.flow_shift;
  const sigmas = numpyLinspace(1, 1 / trainSteps, numInferenceSteps + 1).slice(0, -1)
    .map((s) => shift * s / (1 + (shift - 1) * s));
  // diffusers keeps the first sigma off 1, where lambda = log(1 - sigma) - log(sigma) is -inf.
  if (Math.abs(sigmas[0] - 1) < 1e-6) sigmas[0] -= 1e-6;
  const finalSigma = config.final_sigmas_type === "sigma_min" ? sigmas[sigmas.length - 1] : 0;
  return {
    // float64 sigma * num_train_timesteps cast to int64: truncated.
    timesteps: sigmas.map((s) => Math.trunc(s * trainSteps)),
    sigmas: Float32Array.from([...sigmas, finalSigma]),
  };
}

interface Level {
  alpha: number;
  sigma: number;
  /** log(alpha) - log(sigma): +Infinity at sigma 0. */
  lambda: number;
}

/** _sigma_to_alpha_sigma_t with flow sigmas (alpha = 1 - sigma) and lambda, in float32. */
function flowLevel(sigma: number): Level {
  const alpha = f32(1 - sigma);
  return { alpha, sigma, lambda: f32(f32(Math.log(alpha)) - f32(Math.log(sigma))) };
}

/**
 * The scalars of one B(h) update from level s0 to `target` over the earlier levels `older` (nearest first):
 * x_t = sample*x - x0*m0 - scale * Σ_k rho_k (m_k - m0) / rks[k], and R, b of the order conditions R rho = b.
 * rks ends with 1, the corrector's own term (m_k is then this step's x0).
 */
function bhUpdate(solverType: UniPcMultistepConfig["solver_type"], target: Level, s0: Level, older: Level[]) {
  const order = older.length + 1;
  const h = f32(target.lambda - s0.lambda);
  const hh = -h;
  const hPhi1 = f32(Math.expm1(hh));
  const bh = solverType === "bh1" ? hh : hPhi1;
  const rks = [...older.map((l) => f32(f32(l.lambda - s0.lambda) / h)), 1];
  const R = Array.from({ length: order }, (_, i) => rks.map((r) => f32(r ** i)));
  const b: number[] = [];
  let hPhiK = f32(f32(hPhi1 / hh) - 1);
  let factorial = 1;
  for (let i = 1; i <= order; i++) {
    b.push(f32(f32(hPhiK * factorial) / bh));
    factorial *= i + 1;
    hPhiK = f32(f32(hPhiK / hh) - f32(1 / factorial));
  }
  return {
    sample: f32(target.sigma / s0.sigma),
    x0: f32(target.alpha * hPhi1),
    scale: f32(target.alpha * bh),
    rks,
    R,
    b,
  };
}

type BhUpdate = ReturnType<typeof bhUpdate>;

/** torch.linalg.solve for these 2x2 and 3x3 systems: Gaussian elimination with partial pivoting, float32 out. */
function solve(matrix: number[][], rhs: number[]): number[] {
  const n = rhs.length;
  const a = matrix.map((row, i) => [...row.slice(0, n), rhs[i]]);
  for (let col = 0; col < n; col++) {
    const pivot = a.slice(col).reduce(
      (best, row, i) => Math.abs(row[col]) > Math.abs(a[best][col]) ? col + i : best,
      col,
    );
    [a[col], a[pivot]] = [a[pivot], a[col]];
    for (let row = col + 1; row < n; row++) {
      const factor = a[row][col] / a[col][col];
      for (let k = col; k <= n; k++) a[row][k] -= factor * a[col][k];
    }
  }
  const x = new Array<number>(n);
  for (let row = n - 1; row >= 0; row--) {
    let sum = a[row][n];
    for (let k = row + 1; k < n; k++) sum -= a[row][k] * x[k];
    x[row] = sum / a[row][row];
  }
  return x.map(f32);
}

/**
 * The update's weights on m0 and on each m_k of Σ_k rho_k (m_k - m0) / rks[k]. diffusers multiplies scale into
 * that sum even when it is empty (order 1), so bh1's infinite B(h) at a zero final sigma gives NaN there, as
 * here, and the schedule is refused (createSchedule's finite check).
 */
function weights(u: BhUpdate, rhos: number[]): { m0: number; terms: number[] } {
  return {
    m0: -u.x0 + u.scale * rhos.reduce((sum, rho, k) => sum + rho / u.rks[k], 0),
    terms: rhos.map((rho, k) => -u.scale * rho / u.rks[k]),
  };
}

/** UniP of order `order` from level i (m0 = this step's x0) to level i + 1. */
function predictor(config: UniPcMultistepConfig, levels: Level[], i: number, order: number) {
  const u = bhUpdate(config.solver_type, levels[i + 1], levels[i], levels.slice(i - order + 1, i).reverse());
  // Order 2 takes rho = 1/2 instead of solving its one condition.
  const rhos = order === 1 ? [] : order === 2 ? [0.5] : solve(u.R.slice(0, -1), u.b.slice(0, -1));
  const { m0, terms } = weights(u, rhos);
  return { sample: u.sample, x0: m0, history: terms, model: 0, noise: 0 };
}

/**
 * UniC of order `order` at step i: the sample predicted from level i - 1 (from last, with m0 = the previous
 * x0), corrected with this step's x0, whose term is the last of rks (r = 1).
 */
function corrector(config: UniPcMultistepConfig, levels: Level[], i: number, order: number) {
  const u = bhUpdate(config.solver_type, levels[i], levels[i - 1], levels.slice(i - order, i - 1).reverse());
  const rhos = order === 1 ? [0.5] : solve(u.R, u.b);
  const { m0, terms } = weights(u, rhos);
  return { last: u.sample, x0: terms[terms.length - 1], history: [m0, ...terms.slice(0, -1)] };
}

export function uniPcMultistepSchedule(config: UniPcMultistepConfig, numInferenceSteps: number): Schedule {
  const { timesteps, sigmas } = flowTimestepsAndSigmas(config, numInferenceSteps);
  const levels = Array.from(sigmas, flowLevel);
  const count = timesteps.length;
  // Orders warm up one per step; lower_order_final lowers them again over the last steps.
  const order = (i: number) =>
    Math.min(config.solver_order, i + 1, config.lower_order_final ? count - i : config.solver_order);
  const steps = timesteps.map((timestep, i): SchedulerStep => {
    const corrected = i > 0 && !config.disable_corrector.includes(i - 1);
    return {
      timestep,
      inputScale: 1,
      x0: { sample: 1, model: -sigmas[i], clip: null },
      ...(corrected ? { corrector: corrector(config, levels, i, order(i - 1)) } : {}),
      next: predictor(config, levels, i, order(i)),
    };
  });
  return { steps, initNoiseSigma: 1 };
}
