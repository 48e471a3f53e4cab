// CPU reference of the DMD calibrator (Dynamic Mode Decomposition, Schmid 2010: the multivariate Prony
// method), as cache-dit's DMDState computes it, on the snapshot vectors themselves: a window of the last
// `history` computed-step values Y, and on a cached step, the longest uniformly spaced tail of it. With 4 or
// more snapshots, per batch item (axis 0), the propagator Y_{t+1} ~ A Y_t is fitted through the SVD of the
// snapshots X = [y_0 .. y_{n-2}] (rank truncated), the reduced operator's eigenpairs (lambda, W), the modes
// Phi = X' V_r S_r^-1 W and amplitudes b fitting the newest snapshot; the forecast is Re(Phi (lambda^k b)) at
// the fractional horizon k = (step - newest step) / spacing. Below 4 snapshots the forecast is the TaylorSeer
// rule (src/ref/taylor_seer.ts); cache-dit's DMDState means that too (its docstring: "identical to
// TaylorSeerState") but its ladder takes the difference with the update two back, which the engine does not
// copy. A degenerate fit or a forecast that is not finite in f32 reuses the newest snapshot.
// The pieces after the SVD (truncation, reduced operator, eigenpairs, least squares, mode sums) are shared
// with the GPU calibrator's host fit (src/cache/calibrators/dmd_fit.ts), which gets the SVD from the Gram
// matrix instead; this file's test checks them against cache-dit.
import { EigenvalueDecomposition, Matrix, SingularValueDecomposition } from "ml-matrix";
import { TaylorSeerReference } from "./taylor_seer.ts";

export interface DmdSettings {
  /** Computed-step snapshots kept. */
  history: number;
  /** SVD truncation rank; 0: the singular values above DMD_RANK_CUTOFF of the leading one. */
  rank: number;
  /** Added to the singular values that the fit inverts. */
  ridge: number;
  /** The Taylor fallback's order. */
  nDerivatives: number;
}

/** The identifiability floor: one complex pole costs two real degrees of freedom, so 3 snapshot pairs. */
export const DMD_MIN_SNAPSHOTS = 4;
/** rank 0 keeps the singular values above this fraction of the leading one (what rejects noise). */
export const DMD_RANK_CUTOFF = 1e-4;

const F32_MAX = 3.4028234663852886e38;

/** The longest uniformly spaced tail of the snapshot steps: its length (0 below 2 snapshots) and spacing. */
export function uniformTail(steps: readonly number[]): { length: number; spacing: number } {
  const n = steps.length;
  if (n < 2) return { length: 0, spacing: 0 };
  const spacing = steps[n - 1] - steps[n - 2];
  if (spacing <= 0) return { length: 0, spacing: 0 };
  let length = 2;
  while (length < n && steps[n - length] - steps[n - length - 1] === spacing) length++;
  return { length, spacing };
}

/** A complex matrix (or, with one column, vector) as its real and imaginary parts. */
export interface ComplexMatrix {
  re: Matrix;
  im: Matrix;
}

/** A horizon-free fit: Y(k) = Re(modes (lambda^k * b)). */
export interface ModeFit {
  /** [rows, r]: Phi for the reference, the weights of Phi over the snapshots for the Gram path. */
  modes: ComplexMatrix;
  lambdaRe: Float64Array;
  lambdaIm: Float64Array;
  b: ComplexMatrix;
}

/** How many singular values (descending) the fit keeps, clamped to 1..available as cache-dit does. */
export function truncationRank(singular: readonly number[], rank: number, available: number): number {
  const r = rank > 0 ? rank : Math.max(1, singular.filter((s) => s > singular[0] * DMD_RANK_CUTOFF).length);
  return Math.max(1, Math.min(r, available));
}

/**
 * Eigenpairs of a real square matrix, complex: ml-matrix gives a conjugate pair a +- ib in its real block
 * form, columns j and j+1 of V holding the real and imaginary parts of the first one's eigenvector.
 */
export function eigenpairs(a: Matrix): { re: Float64Array; im: Float64Array; vectors: ComplexMatrix } {
  const evd = new EigenvalueDecomposition(a);
  const re = Float64Array.from(evd.realEigenvalues);
  const im = Float64Array.from(evd.imaginaryEigenvalues);
  const v = evd.eigenvectorMatrix;
  const n = re.length;
  const vre = new Matrix(n, n);
  const vim = new Matrix(n, n);
  for (let j = 0; j < n; j++) {
    const first = im[j] > 0 ? j : im[j] < 0 ? j - 1 : -1;
    for (let i = 0; i < n; i++) {
      if (first < 0) {
        vre.set(i, j, v.get(i, j));
        continue;
      }
      vre.set(i, j, v.get(i, first));
      vim.set(i, j, (first === j ? 1 : -1) * v.get(i, first + 1));
    }
  }
  return { re, im, vectors: { re: vre, im: vim } };
}

/**
 * The reduced operator A~ = (U_r^T X' V_r) S~^-1 (`projected` is U_r^T X' V_r, S~ = S_r + ridge), its
 * eigenvalues, and V_r S~^-1 W, the weights that make the modes Phi = X' V_r S~^-1 W out of X'.
 */
export function reducedModes(
  projected: Matrix,
  singular: readonly number[],
  ridge: number,
  vr: Matrix,
): { lambdaRe: Float64Array; lambdaIm: Float64Array; weights: ComplexMatrix } | null {
  const inverse = singular.map((s) => 1 / (s + ridge));
  const reduced = projected.clone();
  const scaled = vr.clone();
  inverse.forEach((v, j) => {
    reduced.mulColumn(j, v);
    scaled.mulColumn(j, v);
  });
  if (!allFinite(reduced)) return null;
  const { re, im, vectors } = eigenpairs(reduced);
  return {
    lambdaRe: re,
    lambdaIm: im,
    weights: { re: scaled.mmul(vectors.re), im: scaled.mmul(vectors.im) },
  };
}

/** argmin |A b - y| over complex b: the real problem [Re A, -Im A; Im A, Re A] (SVD, minimum norm). */
export function complexLeastSquares(a: ComplexMatrix, y: ComplexMatrix): ComplexMatrix {
  const [rows, cols] = [a.re.rows, a.re.columns];
  const big = new Matrix(2 * rows, 2 * cols);
  big.setSubMatrix(a.re, 0, 0);
  big.setSubMatrix(a.im.clone().neg(), 0, cols);
  big.setSubMatrix(a.im, rows, 0);
  big.setSubMatrix(a.re, rows, cols);
  const rhs = new Matrix(2 * rows, 1);
  rhs.setSubMatrix(y.re, 0, 0);
  rhs.setSubMatrix(y.im, rows, 0);
  const x = new SingularValueDecomposition(big, { autoTranspose: true }).solve(rhs);
  return { re: x.subMatrix(0, cols - 1, 0, 0), im: x.subMatrix(cols, 2 * cols - 1, 0, 0) };
}

/** Re(modes (lambda^k * b)), lambda^k on the principal branch (as torch's complex pow). */
export function modeSum(fit: ModeFit, k: number): Float64Array {
  const { modes, lambdaRe, lambdaIm, b } = fit;
  const out = new Float64Array(modes.re.rows);
  for (let j = 0; j < lambdaRe.length; j++) {
    const magnitude = Math.hypot(lambdaRe[j], lambdaIm[j]) ** k;
    const angle = Math.atan2(lambdaIm[j], lambdaRe[j]) * k;
    const [pr, pi] = [magnitude * Math.cos(angle), magnitude * Math.sin(angle)];
    const [br, bi] = [b.re.get(j, 0), b.im.get(j, 0)];
    const [zr, zi] = [pr * br - pi * bi, pr * bi + pi * br];
    for (let i = 0; i < out.length; i++) out[i] += modes.re.get(i, j) * zr - modes.im.get(i, j) * zi;
  }
  return out;
}

export function allFinite(m: Matrix): boolean {
  return m.to1DArray().every(Number.isFinite);
}

/** The fit of one batch item's window, columns oldest..newest ([size, n]); null when degenerate. */
function fitItem(window: Matrix, settings: DmdSettings): ModeFit | null {
  if (!allFinite(window)) return null;
  const [size, n] = [window.rows, window.columns];
  const x = window.subMatrix(0, size - 1, 0, n - 2);
  const next = window.subMatrix(0, size - 1, 1, n - 1);
  const svd = new SingularValueDecomposition(x, { autoTranspose: true });
  const singular = svd.diagonal;
  const r = truncationRank(singular, settings.rank, singular.length);
  const ur = svd.leftSingularVectors.subMatrix(0, size - 1, 0, r - 1);
  const vr = svd.rightSingularVectors.subMatrix(0, n - 2, 0, r - 1);
  const reduced = reducedModes(ur.transpose().mmul(next).mmul(vr), singular.slice(0, r), settings.ridge, vr);
  if (!reduced) return null;
  const { lambdaRe, lambdaIm, weights } = reduced;
  const modes = { re: next.mmul(weights.re), im: next.mmul(weights.im) };
  const newest = window.subMatrix(0, size - 1, n - 1, n - 1);
  const b = complexLeastSquares(modes, { re: newest, im: Matrix.zeros(size, 1) });
  return { modes, lambdaRe, lambdaIm, b };
}

export class DmdReference {
  readonly #snapshots: { step: number; y: Float64Array }[] = [];
  readonly #taylor: TaylorSeerReference;

  /** `items`: the batch axis' length (cache-dit fits per leading index of a tensor of rank > 1). */
  constructor(readonly items: number, readonly settings: DmdSettings) {
    this.#taylor = new TaylorSeerReference(settings.nDerivatives);
  }

  /** A computed step: Y joins the window (the oldest leaves past `history`) and the Taylor ladder. */
  update(step: number, y: ArrayLike<number>): void {
    this.#snapshots.push({ step, y: Float64Array.from(y) });
    if (this.#snapshots.length > this.settings.history) this.#snapshots.shift();
    this.#taylor.update(step, y);
  }

  /** A cached step: the DMD forecast on a uniform tail of >= 4 snapshots, else the Taylor fallback. */
  approximate(step: number): Float64Array {
    const snapshots = this.#snapshots;
    const newest = snapshots.at(-1);
    if (!newest) throw new Error("DMD: approximate before any update");
    const { length, spacing } = uniformTail(snapshots.map((s) => s.step));
    if (length < DMD_MIN_SNAPSHOTS) return this.#taylor.approximate(step);
    const k = (step - newest.step) / spacing;
    const tail = snapshots.slice(-length);
    const size = newest.y.length / this.items;
    const out = new Float64Array(newest.y.length);
    for (let item = 0; item < this.items; item++) {
      const window = new Matrix(size, length);
      tail.forEach((s, j) => window.setColumn(j, s.y.subarray(item * size, (item + 1) * size)));
      const fit = fitItem(window, this.settings);
      if (!fit) return newest.y.slice();
      out.set(modeSum(fit, k), item * size);
    }
    return out.every((v) => Math.abs(v) <= F32_MAX) ? out : newest.y.slice();
  }
}
