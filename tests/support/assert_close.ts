// Elementwise |actual - expected| <= atol + rtol * |expected|; a failure names the worst and first mismatches.
import { AssertionError } from "node:assert/strict";

export interface Tolerance {
  atol: number;
  rtol: number;
}

export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  what = "values",
): void {
  if (actual.length !== expected.length) {
    throw new AssertionError({ message: `${what}: length ${actual.length}, expected ${expected.length}` });
  }
  let worst = -1;
  let worstExcess = 0;
  let maxAbs = 0;
  const first: string[] = [];
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    const bound = tol.atol + tol.rtol * Math.abs(expected[i]);
    if (Number.isFinite(err)) maxAbs = Math.max(maxAbs, err);
    if (!(err <= bound)) {
      if (first.length < 5) first.push(`[${i}] ${actual[i]} vs ${expected[i]}`);
      if (worst < 0 || !(err - bound <= worstExcess)) {
        worst = i;
        worstExcess = err - bound;
      }
    }
  }
  if (worst >= 0) {
    throw new AssertionError({
      message:
        `${what}: max |diff| ${maxAbs.toExponential(3)} over atol ${tol.atol} + rtol ${tol.rtol}*|ref|; ` +
        `worst [${worst}] ${actual[worst]} vs ${expected[worst]}; first: ${first.join(", ")}`,
    });
  }
}
