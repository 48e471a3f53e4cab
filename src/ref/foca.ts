// CPU reference of the FoCa calibrator (Forecast then Calibrate, Zheng et al. 2025, arXiv 2508.16211, as
// cache-dit implements it with step size 1): on computed steps Y becomes the anchor F_full (the previous one
// F_full_prev) and the head of a rolling window F_k, F_km1; on cached steps the forecast is the Heun
// (trapezoidal) step from the anchor over the elapsed steps, with the average of the anchor's slope and the
// window's slope, and it advances the window, so the next cached step forecasts from it.

/**
 * The Heun step's weight of (anchor slope + window slope) `elapsed` steps after the anchor: elapsed / 2, and
 * beyond a horizon of 3 steps the Heun step at 3 blended towards the anchor with w = 3 / elapsed:
 * w (F_full + 1.5 S) + (1 - w) F_full = F_full + 1.5 w S, so the weight is 4.5 / elapsed.
 */
export function focaWeight(elapsed: number): number {
  const horizon = 3;
  return elapsed <= horizon ? elapsed / 2 : (horizon * horizon / 2) / elapsed;
}

export class FoCaReference {
  /** F_full and F_full_prev: Y at the last two computed steps. */
  full: Float64Array | null = null;
  fullPrevious: Float64Array | null = null;
  /** F_k and F_km1: the last two values, computed or forecast. */
  head: Float64Array | null = null;
  headPrevious: Float64Array | null = null;
  #last: number | null = null;

  /** A computed step: Y is what the skipped span produced. */
  update(step: number, y: ArrayLike<number>): void {
    this.fullPrevious = this.full;
    this.full = Float64Array.from(y);
    this.headPrevious = this.head;
    this.head = Float64Array.from(y);
    this.#last = step;
  }

  /**
   * A cached step: F_full + weight * ((F_full - F_full_prev) + (F_k - F_km1)), which becomes F_k. Before two
   * computed steps it is F_full, and the window stays as it is.
   */
  approximate(step: number): Float64Array {
    const { full, fullPrevious, head, headPrevious } = this;
    if (full === null || head === null || this.#last === null) {
      throw new Error("FoCa: approximate before any update");
    }
    if (fullPrevious === null || headPrevious === null) return full.slice();
    const weight = focaWeight(step - this.#last);
    const forecast = full.map((f, e) => f + weight * ((f - fullPrevious[e]) + (head[e] - headPrevious[e])));
    this.headPrevious = head;
    this.head = forecast;
    return forecast.slice();
  }
}
