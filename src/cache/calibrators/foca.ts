// FoCa on the GPU (CPU reference in src/ref/foca.ts). The state is cache-dit's rewritten in slopes, so that
// every step updates it in place with the axpy op and no buffer swaps roles (a GPU decision cannot swap
// them): the anchor A = F_full and its slope D = F_full - F_full_prev, the window's head K = F_k and its
// slope S = F_k - F_km1. A computed step Y: D = Y - A, S = Y - K, A = K = Y. A cached step after two updates:
// S = c D + c S (c: the Heun weight of the elapsed steps), S += A - K, K += S, which leaves K = A + c (D + S)
// and S = K - K_old (the window advanced); then target += K (residual) or target = K (hidden_states). After
// one update the prediction is A and the window stays. The first update's D and S read an unset A and K and
// are overwritten by the second, before anything reads them.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand, disposeDispatches } from "../../gpu/kernel.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { axpy, type AxpyOp, copyByDispatch } from "../../ops/axpy.ts";
import { focaWeight } from "../../ref/foca.ts";
import type { ConditionalSlot } from "../kernels/conditional_dispatch.ts";
import { ON_COMPUTE, SLOT } from "../kernels/decision_abi.ts";
import type { Calibrator, CalibratorBinding, CalibratorSlots } from "./calibrator.ts";

export class FoCa implements Calibrator {
  /** [anchor, anchor slope, head, head slope], each shaped like the source. */
  readonly #state: Tensor[];
  /** D = Y - A, S = Y - K. */
  readonly #slopes: AxpyOp[];
  /** A = Y, K = Y. */
  readonly #loads: Command[];
  /** S = c D + c S (weighted), S += A, S -= K, K += S. */
  readonly #forecast: AxpyOp[];
  /** The prediction P into the target (target += P, or target = P as a dispatch): A after one update, K after more. */
  readonly #emitAnchor: AxpyOp;
  readonly #emitHead: AxpyOp;
  /** Dispatch versions of the copies, built when a GPU decision drives the calibrator. */
  #copyOps: AxpyOp[] = [];
  #updates = 0;
  #last: number | null = null;

  constructor(private readonly ctx: GpuContext, private readonly binding: CalibratorBinding) {
    const { source, target, mode } = binding;
    this.#state = Array.from({ length: 4 }, () => ctx.pool.tensor(source.shape));
    const [anchor, anchorSlope, head, headSlope] = this.#state;
    this.#slopes = [
      axpy(ctx, anchor, source, { alpha: -1, out: anchorSlope }),
      axpy(ctx, head, source, { alpha: -1, out: headSlope }),
    ];
    this.#loads = [copyCommand("foca anchor", source, anchor), copyCommand("foca head", source, head)];
    this.#forecast = [
      axpy(ctx, anchorSlope, headSlope, { alpha: 0, beta: 0, inPlace: true }),
      axpy(ctx, anchor, headSlope, { alpha: 1, inPlace: true }),
      axpy(ctx, head, headSlope, { alpha: -1, inPlace: true }),
      axpy(ctx, headSlope, head, { alpha: 1, inPlace: true }),
    ];
    const emit = (from: Tensor) =>
      mode === "add"
        ? axpy(ctx, from, target, { alpha: 1, inPlace: true })
        : copyByDispatch(ctx, from, target);
    this.#emitAnchor = emit(anchor);
    this.#emitHead = emit(head);
  }

  get ready(): boolean {
    return this.#last !== null;
  }

  update(step: number, recorder: StepRecorder): void {
    recorder.encode([...this.#slopes.flatMap((op) => op.dispatches), ...this.#loads]);
    this.#updates++;
    this.#last = step;
  }

  approximate(step: number, recorder: StepRecorder): void {
    if (this.#last === null) throw new Error("FoCa: approximate before any update");
    if (this.#updates === 1) {
      recorder.encode(this.#emitAnchor.dispatches);
      return;
    }
    const c = focaWeight(step - this.#last);
    this.#forecast[0].setCoefficients(c, c);
    recorder.encode([...this.#forecast, this.#emitHead].flatMap((op) => op.dispatches));
  }

  /** Gated by the updates the decision kernel counts (1, or 2 for two or more), weighted c from `since`. */
  gpuSlots(): CalibratorSlots {
    const copy = (from: Tensor, to: Tensor) => {
      const op = copyByDispatch(this.ctx, from, to);
      this.#copyOps.push(op);
      return op.dispatches[0];
    };
    const [anchor, , head] = this.#state;
    const { source } = this.binding;
    const compute: ConditionalSlot[] = [
      ...this.#slopes.map((op) => op.dispatches[0]),
      copy(source, anchor),
      copy(source, head),
    ].map((dispatch) => ({ dispatch, code: ON_COMPUTE }));
    const [weighted, ...rest] = this.#forecast;
    const cached: ConditionalSlot[] = [
      { dispatch: this.#emitAnchor.dispatches[0], code: SLOT.focaAnchor },
      { dispatch: weighted.dispatches[0], code: SLOT.focaSlopes, weighted: true },
      ...[...rest, this.#emitHead].map((op) => ({ dispatch: op.dispatches[0], code: SLOT.focaForecast })),
    ];
    return { compute, cached };
  }

  memoryBytes(): number {
    return this.#state.reduce((sum, t) => sum + t.byteLength, 0);
  }

  release(): void {
    const ops = [...this.#slopes, ...this.#forecast, this.#emitAnchor, this.#emitHead, ...this.#copyOps];
    for (const op of ops) op.release();
    disposeDispatches(this.#loads);
    for (const t of this.#state) t.release();
  }
}
