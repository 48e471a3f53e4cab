// Frechet distance between two Gaussians fitted to feature sets (the FID formula, on our classifier's
// features): |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)). Tr((S1 S2)^(1/2)) is the sum of square roots of
// the eigenvalues of S1^(1/2) S2 S1^(1/2), which is symmetric, so symmetric Jacobi eigensolves suffice.

export interface Gaussian {
  mean: Float64Array;
  /** Row-major [d, d]. */
  covariance: Float64Array;
}

/** Mean and unbiased covariance of `count` feature rows of length `dim`. */
export function fitGaussian(features: ArrayLike<number>, count: number, dim: number): Gaussian {
  if (count < 2) throw new Error(`fitGaussian: need at least 2 feature rows, got ${count}`);
  const mean = new Float64Array(dim);
  for (let n = 0; n < count; n++) for (let i = 0; i < dim; i++) mean[i] += features[n * dim + i] / count;
  const covariance = new Float64Array(dim * dim);
  for (let n = 0; n < count; n++) {
    for (let i = 0; i < dim; i++) {
      const di = features[n * dim + i] - mean[i];
      for (let j = i; j < dim; j++) {
        covariance[i * dim + j] += (di * (features[n * dim + j] - mean[j])) / (count - 1);
      }
    }
  }
  for (let i = 0; i < dim; i++) for (let j = 0; j < i; j++) covariance[i * dim + j] = covariance[j * dim + i];
  return { mean, covariance };
}

/** Eigenvalues and eigenvectors (columns of `vectors`) of a symmetric matrix, by cyclic Jacobi rotations. */
export function symmetricEigen(
  matrix: Float64Array,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const [akp, akq] = [a[k * n + p], a[k * n + q]];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const [apk, aqk] = [a[p * n + k], a[q * n + k]];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const [vkp, vkq] = [v[k * n + p], v[k * n + q]];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => a[i * n + i]), vectors: v };
}

function multiply(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      for (let j = 0; j < n; j++) out[i * n + j] += aik * b[k * n + j];
    }
  }
  return out;
}

/** Square root of a symmetric positive semi-definite matrix (negative rounding noise clamped to 0). */
function sqrtPsd(m: Float64Array, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(m, n);
  const scaled = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) scaled[i * n + j] = vectors[i * n + j] * Math.sqrt(Math.max(0, values[j]));
  }
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let k = 0; k < n; k++) sum += scaled[i * n + k] * vectors[j * n + k];
      out[i * n + j] = sum;
    }
  }
  return out;
}

export function frechetDistance(a: Gaussian, b: Gaussian): number {
  const n = a.mean.length;
  if (b.mean.length !== n) throw new Error(`frechetDistance: dimensions ${n} and ${b.mean.length} differ`);
  let meanTerm = 0;
  let trace = 0;
  for (let i = 0; i < n; i++) {
    meanTerm += (a.mean[i] - b.mean[i]) ** 2;
    trace += a.covariance[i * n + i] + b.covariance[i * n + i];
  }
  const root = sqrtPsd(a.covariance, n);
  const inner = multiply(multiply(root, b.covariance, n), root, n);
  // Symmetrise: rounding leaves inner a hair off symmetric, which Jacobi assumes.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      inner[i * n + j] = inner[j * n + i] = (inner[i * n + j] + inner[j * n + i]) / 2;
    }
  }
  const { values } = symmetricEigen(inner, n);
  const crossTrace = values.reduce((sum, v) => sum + Math.sqrt(Math.max(0, v)), 0);
  return meanTerm + trace - 2 * crossTrace;
}
