// Full-reference image quality of a cached run against the uncached image of the same seed: PSNR and SSIM
// (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03), on one-channel images.

/** Sum of (a - b)^2: what PSNR over many images adds up. */
export function squaredError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`psnr: ${a.length} vs ${b.length} values`);
  let squared = 0;
  for (let i = 0; i < a.length; i++) squared += (a[i] - b[i]) ** 2;
  return squared;
}

/** 10 log10(range^2 / MSE) from a summed squared error over `count` values; Infinity when it is 0. */
export function psnrOfSquaredError(squared: number, count: number, range: number): number {
  const mse = squared / count;
  return mse === 0 ? Infinity : 10 * Math.log10((range * range) / mse);
}

/** 10 log10(range^2 / MSE); Infinity for identical images. `range` is the data range (2 for [-1, 1]). */
export function psnr(a: ArrayLike<number>, b: ArrayLike<number>, range: number): number {
  return psnrOfSquaredError(squaredError(a, b), a.length, range);
}

const WINDOW = 11;
const SIGMA = 1.5;

function gaussianWindow(): Float64Array {
  const half = (WINDOW - 1) / 2;
  const w = Float64Array.from(
    { length: WINDOW },
    (_, i) => Math.exp(-((i - half) ** 2) / (2 * SIGMA * SIGMA)),
  );
  const sum = w.reduce((s, v) => s + v, 0);
  return w.map((v) => v / sum);
}

/** Separable Gaussian filter over the positions where the whole window fits ("valid"). */
function filter(image: Float64Array, width: number, height: number, w: Float64Array): Float64Array {
  const [ow, oh] = [width - WINDOW + 1, height - WINDOW + 1];
  const rows = new Float64Array(height * ow);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let k = 0; k < WINDOW; k++) s += w[k] * image[y * width + x + k];
      rows[y * ow + x] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let k = 0; k < WINDOW; k++) s += w[k] * rows[(y + k) * ow + x];
      out[y * ow + x] = s;
    }
  }
  return out;
}

/** Mean SSIM of two width x height images; 1 for identical images. */
export function ssim(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  width: number,
  height: number,
  range: number,
): number {
  if (a.length !== width * height || b.length !== width * height) {
    throw new Error(`ssim: images must hold ${width}x${height} values, got ${a.length} and ${b.length}`);
  }
  if (width < WINDOW || height < WINDOW) throw new Error(`ssim: images must be at least ${WINDOW}x${WINDOW}`);
  const w = gaussianWindow();
  const x = Float64Array.from(a);
  const y = Float64Array.from(b);
  const f = (img: Float64Array) => filter(img, width, height, w);
  const [mx, my] = [f(x), f(y)];
  const [xx, yy, xy] = [f(x.map((v) => v * v)), f(y.map((v) => v * v)), f(x.map((v, i) => v * y[i]))];
  const c1 = (0.01 * range) ** 2;
  const c2 = (0.03 * range) ** 2;
  let sum = 0;
  for (let i = 0; i < mx.length; i++) {
    const [vx, vy, cov] = [xx[i] - mx[i] ** 2, yy[i] - my[i] ** 2, xy[i] - mx[i] * my[i]];
    sum += ((2 * mx[i] * my[i] + c1) * (2 * cov + c2)) / ((mx[i] ** 2 + my[i] ** 2 + c1) * (vx + vy + c2));
  }
  return sum / mx.length;
}
