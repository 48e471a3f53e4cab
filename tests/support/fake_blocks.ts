// A scripted block list for cache-strategy tests: block i adds residuals[i] to `hidden` in place (one axpy),
// and the test rewrites the residuals (and hidden, as the model's prologue would) before each step, so every
// residual and every diff a strategy measures is known exactly.
import type { BlockList } from "../../src/cache/strategy.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import type { Tensor } from "../../src/gpu/tensor.ts";
import { axpy } from "../../src/ops/axpy.ts";
import type { ElementwiseOp } from "../../src/ops/modulate.ts";

export interface FakeBlocks {
  list: BlockList;
  residuals: Tensor[];
  /** Writes hidden and every block's residual for the next step (queue-ordered, before its submits). */
  script(hidden: Float32Array, residuals: readonly Float32Array[]): void;
  release(): void;
}

export function fakeBlocks(ctx: GpuContext, count: number, shape: readonly number[]): FakeBlocks {
  const hidden = ctx.pool.tensor(shape);
  const residuals = Array.from({ length: count }, () => ctx.pool.tensor(shape));
  const ops: ElementwiseOp[] = residuals.map((r) => axpy(ctx, r, hidden, { alpha: 1, inPlace: true }));
  return {
    // TeaCache's probe is the list's input itself: the fake has no modulation.
    list: {
      blocks: ops.map((op) => op.dispatches),
      hidden,
      modulatedInput: { commands: [], tensor: hidden },
    },
    residuals,
    script(values, perBlock) {
      if (perBlock.length !== count) {
        throw new Error(`script: ${perBlock.length} residuals for ${count} blocks`);
      }
      ctx.pool.write(hidden, values);
      perBlock.forEach((r, i) => ctx.pool.write(residuals[i], r));
    },
    release() {
      for (const op of ops) op.release();
      for (const t of [hidden, ...residuals]) t.release();
    },
  };
}

/** Values k/64 with |k| <= 64: sums of a few of them are exact in f32, so the arithmetic is bit-exact. */
export function dyadic(size: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: size }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s >>> 8) % 129 - 64) / 64;
  });
}
