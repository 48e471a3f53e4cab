// CPU reference of the TaylorSeer calibrator (cache-strategies.md), written as the doc states it: finite
// differences of Y over the computed steps, extrapolated with a Taylor series on cached steps.

export class TaylorSeerReference {
  /** d_cur[0..]: Y at the last computed step and its divided differences. */
  current: Float64Array[] = [];
  #last: number | null = null;

  constructor(readonly nDerivatives: number) {}

  /** A computed step: Y is what the skipped span produced. */
  update(step: number, y: ArrayLike<number>): void {
    const previous = this.current;
    const current = [Float64Array.from(y)];
    const w = this.#last === null ? 1 : step - this.#last;
    for (let i = 0; i < this.nDerivatives && i < previous.length; i++) {
      current.push(current[i].map((v, e) => (v - previous[i][e]) / w));
    }
    this.current = current;
    this.#last = step;
  }

  /** A cached step: sum_i d_cur[i] * k^i / i!, k = steps since the last computed one. */
  approximate(step: number): Float64Array {
    if (this.#last === null) throw new Error("TaylorSeer: approximate before any update");
    const k = step - this.#last;
    const out = new Float64Array(this.current[0].length);
    this.current.forEach((d, i) => {
      const weight = k ** i / factorial(i);
      for (let e = 0; e < out.length; e++) out[e] += weight * d[e];
    });
    return out;
  }
}

export function factorial(n: number): number {
  let f = 1;
  for (let i = 2; i <= n; i++) f *= i;
  return f;
}
