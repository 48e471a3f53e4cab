// TaylorSeer on the GPU (cache-strategies.md; CPU reference in src/ref/taylor_seer.ts). On computed steps
// `update` stores Y (the skipped span's residual, or the hidden state after it) and its divided differences
// over the computed steps; on cached steps `approximate` writes the Taylor extrapolation into the target,
// either adding it (residual) or replacing the target (hidden_states). Step-dependent weights (1/w, k^i/i!)
// are rewritten into the axpy uniforms, so every dispatch is built once per request.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand, disposeDispatches } from "../../gpu/kernel.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { axpy, type AxpyOp, copyByDispatch } from "../../ops/axpy.ts";
import type { ConditionalSlot } from "../kernels/conditional_dispatch.ts";
import { ON_COMPUTE, SLOT } from "../kernels/decision_abi.ts";
import { factorial } from "../../ref/taylor_seer.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Calibrator, CalibratorBinding, CalibratorSlots } from "./calibrator.ts";

export interface TaylorSeerBinding extends CalibratorBinding {
  nDerivatives: number;
}

export class TaylorSeer implements Calibrator {
  readonly #current: Tensor[];
  readonly #previous: Tensor[];
  readonly #keepPrevious: Command[];
  readonly #load: Command;
  /** current[i+1] = (current[i] - previous[i]) / w */
  readonly #differences: AxpyOp[];
  readonly #replaceTarget: Command;
  /** target += weight_i * current[i] */
  readonly #terms: AxpyOp[];
  /** Dispatch versions of the copies, built when a GPU decision drives the calibrator. */
  #copyOps: AxpyOp[] = [];
  /** Entries of current that hold values (grows to n + 1 over the first updates). */
  #valid = 0;
  #last: number | null = null;

  constructor(private readonly ctx: GpuContext, private readonly binding: TaylorSeerBinding) {
    const { source, target, nDerivatives } = binding;
    const n = nDerivatives + 1;
    this.#current = Array.from({ length: n }, () => ctx.pool.tensor(source.shape));
    this.#previous = Array.from({ length: n }, () => ctx.pool.tensor(source.shape));
    this.#keepPrevious = this.#current.map((t, i) =>
      copyCommand(`taylorseer d_prev[${i}]`, t, this.#previous[i])
    );
    this.#load = copyCommand("taylorseer d_cur[0]", source, this.#current[0]);
    this.#differences = this.#current.slice(1).map((out, i) =>
      axpy(ctx, this.#previous[i], this.#current[i], { alpha: -1, out })
    );
    this.#replaceTarget = copyCommand("taylorseer target", this.#current[0], target);
    this.#terms = this.#current.map((d) => axpy(ctx, d, target, { alpha: 1, inPlace: true }));
  }

  get ready(): boolean {
    return this.#last !== null;
  }

  update(step: number, recorder: StepRecorder): void {
    const previousValid = this.#valid;
    const w = this.#last === null ? 1 : step - this.#last;
    recorder.encode(this.#keepPrevious.slice(0, previousValid));
    recorder.encode([this.#load]);
    const differences = this.#differences.slice(0, Math.min(previousValid, this.binding.nDerivatives));
    for (const op of differences) {
      op.setCoefficients(-1 / w, 1 / w);
      recorder.encode(op.dispatches);
    }
    this.#valid = 1 + differences.length;
    this.#last = step;
  }

  approximate(step: number, recorder: StepRecorder): void {
    if (this.#last === null) throw new Error("TaylorSeer: approximate before any update");
    const k = step - this.#last;
    const replace = this.binding.mode === "replace";
    if (replace) recorder.encode([this.#replaceTarget]);
    for (let i = replace ? 1 : 0; i < this.#valid; i++) {
      this.#terms[i].setCoefficients(k ** i / factorial(i));
      recorder.encode(this.#terms[i].dispatches);
    }
  }

  /** Gated by the derivative entries that exist and weighted 1/w on update, k^i/i! on approximate. */
  gpuSlots(): CalibratorSlots {
    const copy = (from: Tensor, to: Tensor) => {
      const op = copyByDispatch(this.ctx, from, to);
      this.#copyOps.push(op);
      return op.dispatches[0];
    };
    const n = this.binding.nDerivatives;
    const replace = this.binding.mode === "replace";
    const compute: ConditionalSlot[] = [
      ...this.#current.map((t, i) => ({ dispatch: copy(t, this.#previous[i]), code: SLOT.keepPrevious(i) })),
      { dispatch: copy(this.binding.source, this.#current[0]), code: ON_COMPUTE },
      ...this.#differences.slice(0, n).map((op, i) => ({
        dispatch: op.dispatches[0],
        code: SLOT.difference(i),
        weighted: true,
      })),
    ];
    const cached: ConditionalSlot[] = [
      ...(replace
        ? [{ dispatch: copy(this.#current[0], this.binding.target), code: SLOT.cachedWithHistory }]
        : []),
      ...this.#terms.slice(replace ? 1 : 0).map((op, j) => ({
        dispatch: op.dispatches[0],
        code: SLOT.term(j + (replace ? 1 : 0)),
        weighted: true,
      })),
    ];
    return { compute, cached };
  }

  memoryBytes(): number {
    return [...this.#current, ...this.#previous].reduce((sum, t) => sum + t.byteLength, 0);
  }

  release(): void {
    for (const op of [...this.#differences, ...this.#terms, ...this.#copyOps]) op.release();
    disposeDispatches([...this.#keepPrevious, this.#load, this.#replaceTarget]);
    for (const t of [...this.#current, ...this.#previous]) t.release();
  }
}
