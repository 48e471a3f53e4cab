// The DMD fit of one batch item's window (cache-dit's rule, src/ref/dmd.ts) from the window's Gram matrix
// G = V^T V alone (n <= history snapshots of `size` values, columns oldest..newest), in float64 on the host,
// so that the snapshots never leave the GPU. Every quantity of the fit is a block of G: with X = V[:, :-1]
// and X' = V[:, 1:], the SVD of X comes from the eigendecomposition of X^T X = G[:-1, :-1] (S = sqrt of its
// eigenvalues, its eigenvectors the right singular vectors), U_r^T X' V_r = S_r^-1 V_r^T (X^T X') V_r, and
// the modes Phi = X' M are combinations of the snapshots; the amplitudes fit the newest snapshot in the
// coordinates of a square root L of X'^T X' (|X' M b - y| = |L M b - L e|). The forecast Re(Phi (lambda^k b))
// is then sum_j c_j(k) y_j with real weights c = [0, Re(M (lambda^k b))], which the GPU applies.
// G comes from the exact kernel of shaders/snapshot_window.wgsl, so the singular values are as resolved as
// f64 eigenvalues of G allow: down to ~1e-8 of the leading one. A mode below GRAM_RESOLUTION of it (only an
// explicit rank can ask for one; rank 0 cuts at 1e-4) is dropped here, where cache-dit's SVD would keep a
// direction of rounding noise.
import { EigenvalueDecomposition, Matrix } from "ml-matrix";
import {
  allFinite,
  complexLeastSquares,
  type DmdSettings,
  type ModeFit,
  modeSum,
  reducedModes,
  truncationRank,
} from "../../ref/dmd.ts";

/** Singular values at or below this fraction of the leading one are not resolved from G. */
export const GRAM_RESOLUTION = 1e-7;

/** Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix. */
function symmetricEigen(a: Matrix): { values: number[]; vectors: Matrix } {
  const evd = new EigenvalueDecomposition(a, { assumeSymmetric: true });
  const order = evd.realEigenvalues.map((v, i) => [v, i]).sort((x, y) => y[0] - x[0]);
  const vectors = new Matrix(a.rows, a.rows);
  order.forEach(([, i], j) => vectors.setColumn(j, evd.eigenvectorMatrix.getColumn(i)));
  return { values: order.map(([v]) => v), vectors };
}

/** L with L^T L = a for a symmetric positive semi-definite a (rounding's negative eigenvalues as 0). */
function gramRoot(a: Matrix): Matrix {
  const { values, vectors } = symmetricEigen(a);
  const root = vectors.transpose();
  values.forEach((v, i) => root.mulRow(i, Math.sqrt(Math.max(v, 0))));
  return root;
}

/**
 * The horizon-free fit of a window from its Gram matrix `gram` ([n, n], n >= 2) of snapshots of `size`
 * values; its modes are the weights of Phi over the snapshots 1..n-1. Null when degenerate (a non-finite G,
 * or no singular value resolved: an all-zero window), where the caller reuses the newest snapshot.
 */
export function fitFromGram(gram: Matrix, size: number, settings: DmdSettings): ModeFit | null {
  if (!allFinite(gram)) return null;
  const n = gram.rows;
  const m = n - 1;
  const { values, vectors } = symmetricEigen(gram.subMatrix(0, m - 1, 0, m - 1));
  const singular = values.map((v) => Math.sqrt(Math.max(v, 0)));
  const resolved = singular.filter((s) => s > singular[0] * GRAM_RESOLUTION).length;
  if (resolved === 0) return null;
  const r = Math.min(truncationRank(singular, settings.rank, Math.min(m, size)), resolved);
  const vr = vectors.subMatrix(0, m - 1, 0, r - 1);
  const sr = singular.slice(0, r);
  const projected = vr.transpose().mmul(gram.subMatrix(0, m - 1, 1, n - 1)).mmul(vr);
  sr.forEach((s, i) => projected.mulRow(i, 1 / s));
  const reduced = reducedModes(projected, sr, settings.ridge, vr);
  if (!reduced) return null;
  const { lambdaRe, lambdaIm, weights } = reduced;
  const root = gramRoot(gram.subMatrix(1, n - 1, 1, n - 1));
  const newest = root.subMatrix(0, m - 1, m - 1, m - 1);
  const b = complexLeastSquares(
    { re: root.mmul(weights.re), im: root.mmul(weights.im) },
    { re: newest, im: Matrix.zeros(m, 1) },
  );
  return { modes: weights, lambdaRe, lambdaIm, b };
}

/** The forecast's weights over the window's n snapshots at horizon k (spacings): [0, Re(M (lambda^k b))]. */
export function forecastWeights(fit: ModeFit, k: number): Float64Array {
  const weights = new Float64Array(fit.modes.re.rows + 1);
  weights.set(modeSum(fit, k), 1);
  return weights;
}
