// What `deno task calibrate` runs instead of a cache strategy: every block of every step, as an uncached run,
// while it reads back what MagCache and TeaCache are calibrated on: the block list's image-stream residual
// (for the magnitude ratio between consecutive steps), the first block's timestep-modulated input and the
// list's output (for TeaCache's input-to-output change relation). Readbacks are fine here: calibration runs
// offline, once per model, sampler and step count.
import { PolynomialRegression } from "ml-regression-polynomial";
import type { GpuContext } from "../gpu/context.ts";
import { copyCommand } from "../gpu/kernel.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { relativeL1 } from "./teacache.ts";
import {
  type BlockList,
  type CacheStats,
  type CacheStrategy,
  emptyStats,
  type ForwardInfo,
  type ForwardReport,
} from "./strategy.ts";

/** One forward's readings, [batch * tokens * channels] each. */
interface Reading {
  residual: Float32Array;
  modulated: Float32Array | null;
  output: Float32Array;
}

/** Per step of one run: MagCache's ratio, and TeaCache's (input change, output change) pair after step 0. */
export interface RunFigures {
  magRatios: number[];
  teacachePairs: [number, number][];
}

/** diffusers' calibration: the mean over tokens of |r_t| / (|r_{t-1}| + 1e-8), norms over channels. */
export function magnitudeRatio(previous: Float32Array, current: Float32Array, channels: number): number {
  const tokens = current.length / channels;
  let sum = 0;
  for (let t = 0; t < tokens; t++) {
    let [now, before] = [0, 0];
    for (let c = t * channels; c < (t + 1) * channels; c++) {
      now += current[c] * current[c];
      before += previous[c] * previous[c];
    }
    sum += Math.sqrt(now) / (Math.sqrt(before) + 1e-8);
  }
  return sum / tokens;
}

function relativeChange(previous: Float32Array, current: Float32Array): number {
  let [diff, ref] = [0, 0];
  for (let i = 0; i < current.length; i++) {
    diff += Math.abs(previous[i] - current[i]);
    ref += Math.abs(previous[i]);
  }
  return relativeL1([diff, ref]);
}

/** numpy.polyfit(x, y, degree): least-squares coefficients, highest power first. */
export function fitPolynomial(pairs: readonly [number, number][], degree: number): number[] {
  if (pairs.length <= degree) {
    throw new Error(
      `a degree-${degree} fit needs more than ${degree} (input, output) pairs; got ${pairs.length}`,
    );
  }
  const fit = new PolynomialRegression(pairs.map((p) => p[0]), pairs.map((p) => p[1]), degree);
  return [...fit.coefficients].reverse();
}

export class CalibrationRecorder implements CacheStrategy {
  readonly name = "calibrate";
  readonly #stats = emptyStats("none (calibrating)", []);
  /** Per CFG branch (the one forward of an unguided or batched step is "cond"). */
  readonly #runs = new Map<string, { previous: Reading | null; figures: RunFigures }>();
  #buffers: { input: Tensor; modulated: Tensor | null; release(): void } | null = null;

  constructor(private readonly ctx: GpuContext) {}

  async forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport> {
    const b = this.#prepare(list);
    const probe = list.modulatedInput;
    recorder.encode([copyCommand("calibrate: list input", list.hidden, b.input)]);
    if (probe && b.modulated) {
      recorder.encode([
        ...probe.commands,
        copyCommand("calibrate: modulated input", probe.tensor, b.modulated),
      ]);
    }
    for (const block of list.blocks) recorder.encode(block);
    const input = await recorder.read(b.input);
    const output = await recorder.read(list.hidden);
    const reading: Reading = {
      residual: output.map((v, i) => v - input[i]),
      modulated: b.modulated ? await recorder.read(b.modulated) : null,
      output,
    };
    this.#stats.readbacks += b.modulated ? 3 : 2;
    this.#record(info.branch ?? "cond", reading, list.hidden.shape[list.hidden.shape.length - 1]);
    this.#stats.steps++;
    this.#stats.computedSteps.push(info.step);
    this.#stats.blocksExecuted += list.blocks.length;
    this.#stats.blocksTotal += list.blocks.length;
    return { blocksRun: list.blocks.length, cached: false };
  }

  /** The run's figures for a CFG branch (an unguided or batched run has "cond" only); one recorder per run. */
  figures(branch: "cond" | "uncond" = "cond"): RunFigures | null {
    return this.#runs.get(branch)?.figures ?? null;
  }

  #record(branch: string, reading: Reading, channels: number): void {
    const run = this.#runs.get(branch) ?? { previous: null, figures: { magRatios: [], teacachePairs: [] } };
    this.#runs.set(branch, run);
    const previous = run.previous;
    run.figures.magRatios.push(previous ? magnitudeRatio(previous.residual, reading.residual, channels) : 1);
    if (previous?.modulated && reading.modulated) {
      run.figures.teacachePairs.push([
        relativeChange(previous.modulated, reading.modulated),
        relativeChange(previous.output, reading.output),
      ]);
    }
    run.previous = reading;
  }

  #prepare(list: BlockList) {
    if (this.#buffers) return this.#buffers;
    const input = this.ctx.pool.tensor(list.hidden.shape);
    const modulated = list.modulatedInput ? this.ctx.pool.tensor(list.modulatedInput.tensor.shape) : null;
    this.#buffers = {
      input,
      modulated,
      release() {
        input.release();
        modulated?.release();
      },
    };
    return this.#buffers;
  }

  settle(): Promise<ForwardReport[]> {
    return Promise.resolve([]);
  }

  stats(): CacheStats {
    return { ...this.#stats };
  }

  memoryBytes(): number {
    return (this.#buffers?.input.byteLength ?? 0) + (this.#buffers?.modulated?.byteLength ?? 0);
  }

  release(): void {
    this.#buffers?.release();
    this.#buffers = null;
  }
}
