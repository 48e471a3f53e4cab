// CPU reference of src/ops/axpy.ts, rounded to f32 once per element.

/** beta * y + alpha * x + constant (returned; the op may write it into y). */
export function axpy(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  alpha: number,
  beta = 1,
  constant = 0,
): Float32Array {
  if (x.length !== y.length) throw new Error(`axpy: x has ${x.length} values, y ${y.length}`);
  return Float32Array.from(y, (v, i) => beta * v + alpha * x[i] + constant);
}
