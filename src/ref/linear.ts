// CPU reference of src/ops/linear.ts: accumulated in float64, rounded to f32 once per output.
import type { Activation } from "../ops/linear.ts";

export interface LinearDims {
  /** Rows of x per batch entry (all rows when W is shared). */
  rows: number;
  cols: number;
  depth: number;
  /** W is [batch, N, K] and x [batch, M, K] when given. */
  batch?: number;
}

export interface LinearRefOptions {
  bias?: ArrayLike<number>;
  activation?: Activation;
  /** Dense [batch * rows, N] values to add the result onto (the op's accumulate / gate mode). */
  accumulateOnto?: ArrayLike<number>;
  /** Gate of global row g, column n: values[offset + floor(g / rowsPerGate) * stride + n]. */
  gate?: { values: ArrayLike<number>; offset: number; stride: number; rowsPerGate: number };
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/**
 * erf in float64 (JavaScript has none): its Maclaurin series for |x| <= 3 (terms peak near 200, so ~1e-14
 * absolute), and beyond, 1 - erfc from erfc's continued fraction e^-x^2 / sqrt(pi) / (x + (1/2) / (x + 1 /
 * (x + (3/2) / ...))), 60 levels deep (erfc(3) = 2e-5 already).
 */
export function erf(x: number): number {
  const z = Math.abs(x);
  if (z > 3) {
    let tail = 0;
    for (let k = 60; k >= 1; k--) tail = k / 2 / (z + tail);
    return Math.sign(x) * (1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + tail));
  }
  let term = z;
  let sum = z;
  for (let n = 1; Math.abs(term) > 1e-17; n++) {
    term *= -z * z / n;
    sum += term / (2 * n + 1);
  }
  return Math.sign(x) * 2 / Math.sqrt(Math.PI) * sum;
}

export function activate(v: number, activation?: Activation): number {
  if (activation === "gelu_tanh") return 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v ** 3)));
  if (activation === "silu") return v / (1 + Math.exp(-v));
  if (activation === "relu") return Math.max(v, 0);
  if (activation === "quick_gelu") return v / (1 + Math.exp(-1.702 * v));
  if (activation === "gelu_erf") return 0.5 * v * (1 + erf(v / Math.SQRT2));
  return v;
}

/** Returns [batch * rows, N]: act(x W^T + b), times the gate and plus accumulateOnto where given. */
export function linear(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  dims: LinearDims,
  options: LinearRefOptions = {},
): Float32Array {
  const { rows, cols, depth } = dims;
  const batch = dims.batch ?? 1;
  const { bias, activation, accumulateOnto, gate } = options;
  const out = new Float32Array(batch * rows * cols);
  for (let z = 0; z < batch; z++) {
    const wBase = dims.batch === undefined ? 0 : z * cols * depth;
    for (let r = 0; r < rows; r++) {
      const g = z * rows + r;
      for (let n = 0; n < cols; n++) {
        let sum = bias ? bias[n] : 0;
        for (let k = 0; k < depth; k++) sum += x[g * depth + k] * w[wBase + n * depth + k];
        let v = activate(sum, activation);
        if (gate) v *= gate.values[gate.offset + Math.floor(g / gate.rowsPerGate) * gate.stride + n];
        if (accumulateOnto) v += accumulateOnto[g * cols + n];
        out[g * cols + n] = v;
      }
    }
  }
  return out;
}
