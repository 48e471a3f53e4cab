// DMD on the GPU (CPU reference in src/ref/dmd.ts). The snapshots stay on the GPU in a ring of
// max(history, n_derivatives + 1) slots (src/ops/snapshot_window.ts); each update copies Y into the next
// slot and computes its exact dot products with every slot, which come back (one small readback) to fill the
// host's Gram matrix per batch item. On a cached step the host fits the window's uniform tail from the Gram
// matrix in f64 (dmd_fit.ts, once per window) and the GPU applies the forecast as weights over the slots;
// the Taylor fallback is TaylorSeerReference run on the slots' coefficient vectors (each update adds the
// unit vector of its slot), so it too is a weighting of the slots, the same for every item; the ring has room
// for the n_derivatives + 1 newest snapshots its terms combine even when history is shorter.
// The host must see each update's Gram row before the next cached step: the readback path gives that time,
// and awaits settled() (calibratorNeedsHost); the GPU-decided path cannot run DMD.
import { Matrix } from "ml-matrix";
import type { GpuContext } from "../../gpu/context.ts";
import { readback } from "../../gpu/readback.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import { gramRows, type SnapshotWindow, snapshotWindow } from "../../ops/snapshot_window.ts";
import { DMD_MIN_SNAPSHOTS, type DmdSettings, type ModeFit, uniformTail } from "../../ref/dmd.ts";
import { TaylorSeerReference } from "../../ref/taylor_seer.ts";
import type { Calibrator, CalibratorBinding, CalibratorSlots } from "./calibrator.ts";
import { fitFromGram, forecastWeights } from "./dmd_fit.ts";

const F32_MAX = 3.4028234663852886e38;

interface Snapshot {
  step: number;
  slot: number;
  /** Which update wrote the slot: its Gram row is on the host once `received` holds this. */
  update: number;
}

export class Dmd implements Calibrator {
  readonly #window: SnapshotWindow;
  readonly #taylor: TaylorSeerReference;
  /** The last `history` snapshots, oldest first. */
  readonly #snapshots: Snapshot[] = [];
  /** Per batch item, [slots, slots]: the dot products of the slots' snapshots. */
  readonly #gram: Float64Array[];
  /** Per slot, the update whose Gram row arrived (-1: none). */
  readonly #received: number[];
  readonly #reads: Promise<void>[] = [];
  #updates = 0;
  /** The fit of the window the last cached step used, per item (null: degenerate), and its window's key. */
  #fit: { key: string; items: (ModeFit | null)[] } | null = null;

  constructor(
    private readonly ctx: GpuContext,
    binding: CalibratorBinding,
    private readonly settings: DmdSettings,
  ) {
    const slots = Math.max(settings.history, settings.nDerivatives + 1);
    this.#window = snapshotWindow(ctx, binding.source, slots, binding.target, binding.mode);
    this.#taylor = new TaylorSeerReference(settings.nDerivatives);
    this.#gram = Array.from({ length: this.#window.items }, () => new Float64Array(slots * slots));
    this.#received = new Array(slots).fill(-1);
  }

  get ready(): boolean {
    return this.#snapshots.length > 0;
  }

  update(step: number, recorder: StepRecorder): void {
    const w = this.#window;
    const update = this.#updates++;
    const slot = update % w.slots;
    recorder.encode([w.load(slot), ...w.gram(slot)]);
    recorder.submit();
    const read = readback(this.ctx.gpu, w.partials).then((words) => {
      const rows = gramRows(words as Uint32Array, w.items, w.slots);
      this.#gram.forEach((g, item) => {
        for (let j = 0; j < w.slots; j++) {
          g[slot * w.slots + j] = g[j * w.slots + slot] = rows[item * w.slots + j];
        }
      });
      this.#received[slot] = update;
    });
    this.#reads.push(read);
    this.#snapshots.push({ step, slot, update });
    if (this.#snapshots.length > this.settings.history) this.#snapshots.shift();
    const unit = new Float64Array(w.slots);
    unit[slot] = 1;
    this.#taylor.update(step, unit);
  }

  /** Resolves once every update's Gram row is on the host; a cached step needs it first. */
  async settled(): Promise<void> {
    await Promise.all(this.#reads.splice(0));
  }

  approximate(step: number, recorder: StepRecorder): void {
    const newest = this.#snapshots.at(-1);
    if (!newest) throw new Error("DMD: approximate before any update");
    const w = this.#window;
    const { length, spacing } = uniformTail(this.#snapshots.map((s) => s.step));
    const weights = new Float64Array(w.items * w.slots);
    if (length < DMD_MIN_SNAPSHOTS) {
      const coefficients = this.#taylor.approximate(step);
      for (let item = 0; item < w.items; item++) weights.set(coefficients, item * w.slots);
    } else {
      const tail = this.#snapshots.slice(-length);
      const k = (step - newest.step) / spacing;
      if (!this.#forecast(tail, k, weights)) {
        weights.fill(0);
        for (let item = 0; item < w.items; item++) weights[item * w.slots + newest.slot] = 1;
      }
    }
    recorder.encode(w.combine(weights));
  }

  /** The forecast's weights per item into `weights`; false when a fit is degenerate or overflows f32. */
  #forecast(tail: Snapshot[], k: number, weights: Float64Array): boolean {
    const w = this.#window;
    const late = tail.find((s) => this.#received[s.slot] !== s.update);
    if (late) {
      throw new Error(
        `DMD: the Gram row of step ${late.step}'s snapshot is not on the host yet; the strategy must await ` +
          "the calibrator's settled() before a cached step (the readback path, calibratorNeedsHost)",
      );
    }
    const key = tail.map((s) => `${s.step}:${s.slot}`).join();
    if (this.#fit?.key !== key) {
      const grams = this.#gram.map((g) =>
        new Matrix(tail.map((a) => tail.map((b) => g[a.slot * w.slots + b.slot])))
      );
      this.#fit = { key, items: grams.map((g) => fitFromGram(g, w.size, this.settings)) };
    }
    for (const [item, fit] of this.#fit.items.entries()) {
      if (!fit) return false;
      const c = forecastWeights(fit, k);
      // |forecast| <= its 2-norm, sqrt(c^T G c): within f32, so is every value (cache-dit checks each value).
      let squared = 0;
      tail.forEach((a, i) =>
        tail.forEach((b, j) => squared += c[i] * c[j] * this.#gram[item][a.slot * w.slots + b.slot])
      );
      if (!(squared <= F32_MAX ** 2)) return false;
      tail.forEach((s, i) => weights[item * w.slots + s.slot] = c[i]);
    }
    return true;
  }

  gpuSlots(): CalibratorSlots {
    throw new Error(
      "DMD: the host fits the window after every computed step, so a GPU decision cannot drive it; " +
        "run it on the readback path (calibratorNeedsHost)",
    );
  }

  memoryBytes(): number {
    return this.#window.memoryBytes();
  }

  release(): void {
    this.#window.release();
  }
}
