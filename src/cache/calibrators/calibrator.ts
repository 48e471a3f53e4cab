// What a skipped span's stored stream asks of a calibrator (StoredSpan): take Y on computed steps, write its
// prediction on cached steps, and the same as conditional slots of a GPU decision. The implementations:
// TaylorSeer (taylor_seer.ts), FoCa (foca.ts) and DMD (dmd.ts), chosen by the options' calibrator type. DMD
// fits on the host after every computed step, so it runs on the readback path only (calibratorNeedsHost).
import type { GpuContext } from "../../gpu/context.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { ConditionalSlot } from "../kernels/conditional_dispatch.ts";
import type { CalibratorOptions } from "../options.ts";
import { Dmd } from "./dmd.ts";
import { FoCa } from "./foca.ts";
import { TaylorSeer } from "./taylor_seer.ts";

export interface CalibratorBinding {
  /** Read on update: Y at a computed step. */
  source: Tensor;
  /** Written on approximate. */
  target: Tensor;
  /** "add": target += prediction (a residual); "replace": target = prediction (a hidden state). */
  mode: "add" | "replace";
}

/** A calibrator's dispatches as slots: its update on computed steps, its prediction on cached ones. */
export interface CalibratorSlots {
  compute: ConditionalSlot[];
  cached: ConditionalSlot[];
}

export interface Calibrator {
  /** True once an update has stored something to predict from. */
  readonly ready: boolean;
  /** A computed step, after the source holds Y. */
  update(step: number, recorder: StepRecorder): void;
  /** A cached step: the prediction into the target. */
  approximate(step: number, recorder: StepRecorder): void;
  /**
   * The same as slots of a GPU-decided span (src/cache/kernels/decision_abi.ts): gated by the history the
   * decision kernel counts (calibratorHistory entries beyond the first), weighted from the steps since the
   * last computed one, so no step needs the host to know what was decided.
   */
  gpuSlots(): CalibratorSlots;
  /**
   * Host work an update started (DMD: its Gram row's readback), which the next approximate needs; absent
   * where there is none. A strategy on the readback path awaits it before a cached step.
   */
  settled?(): Promise<void>;
  memoryBytes(): number;
  release(): void;
}

export function createCalibrator(
  ctx: GpuContext,
  o: CalibratorOptions,
  binding: CalibratorBinding,
): Calibrator {
  switch (o.type) {
    case "foca":
      return new FoCa(ctx, binding);
    case "dmd":
      return new Dmd(ctx, binding, { ...o, nDerivatives: o.n_derivatives });
    case "taylorseer":
      return new TaylorSeer(ctx, { ...binding, nDerivatives: o.n_derivatives });
  }
}

/**
 * Whether the calibrator's approximate needs the host to have seen each computed step's values (DMD's fit),
 * so that its strategy must decide on the readback path and await the calibrators' settled() before a
 * cached step.
 */
export function calibratorNeedsHost(o: CalibratorOptions | null): boolean {
  return o?.type === "dmd";
}

/**
 * The decision kernels' `derivatives` uniform: they count 1 + min(entries, derivatives) entries after each
 * computed step. TaylorSeer's entries are its derivative orders; FoCa tells one stored update (its fallback)
 * from two or more (its forecast). DMD has no GPU-decided form (calibratorNeedsHost).
 */
export function calibratorHistory(o: CalibratorOptions | null): number {
  if (!o) return 0;
  if (o.type === "dmd") {
    throw new Error("calibratorHistory: DMD runs on the readback path only (calibratorNeedsHost)");
  }
  return o.type === "foca" ? 1 : o.n_derivatives;
}

/**
 * " + TaylorSeer (residual, 1 derivatives)", " + FoCa (residual)" or " + DMD (residual, history 6)" for a
 * strategy's stats name; "" without.
 */
export function calibratorLabel(o: CalibratorOptions | null): string {
  if (!o) return "";
  switch (o.type) {
    case "foca":
      return ` + FoCa (${o.cache_type})`;
    case "dmd":
      return ` + DMD (${o.cache_type}, history ${o.history})`;
    case "taylorseer":
      return ` + TaylorSeer (${o.cache_type}, ${o.n_derivatives} derivatives)`;
  }
}

export const ENCODER_NOTE = "enable_encoder_taylorseer: this model has no encoder (text) stream, so the " +
  "encoder calibrator has nothing to predict";

export const ENCODER_UNREAD_NOTE =
  "enable_encoder_taylorseer: with Bn 0 no block runs after the cached span " +
  "and the output reads the image stream only, so the text stream's prediction changes nothing (Bn >= 1 uses it)";

/**
 * What the calibrator options mean on a block list of `streams` token streams; `textReadAfter`: whether a
 * block reads the text stream after what the calibrator predicts (DBCache's B blocks; any later block under
 * DBPrune).
 */
export function calibratorNotes(
  o: CalibratorOptions | null,
  streams: number,
  textReadAfter: boolean,
): string[] {
  if (!o?.encoder) return [];
  if (streams === 1) return [ENCODER_NOTE];
  return textReadAfter ? [] : [ENCODER_UNREAD_NOTE];
}
