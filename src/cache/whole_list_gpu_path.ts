// A whole-list strategy's GPU path (src/cache/decision_path.ts): the step's measure, then the decision kernel
// (src/cache/kernels/whole_list_decision.ts), then the whole block list with its snapshots and stores, and
// the residual replay, each as conditional dispatches of which the GPU runs one side. Copies cannot be made
// conditional, so the snapshots, the blocks' own copies and EasyCache's gathers run as dispatches here. The
// host never waits inside the loop; the log is read behind it. One image per forward: images that decide
// apart need the host's row copies (src/cache/image_rows.ts), so a batch takes the readback path.
import type { GpuContext } from "../gpu/context.ts";
import { type Command, type CopyCommand, type Dispatch, isDispatch } from "../gpu/kernel.ts";
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { copyByDispatch } from "../ops/axpy.ts";
import { copyAsDispatch } from "../ops/copy.ts";
import type { ResidualDiff } from "../ops/residual_diff.ts";
import type { StreamStore } from "./stored_stream.ts";
import type { ConditionalSlot } from "./kernels/conditional_dispatch.ts";
import { ON_CACHED, ON_COMPUTE } from "./kernels/decision_abi.ts";
import {
  type LoggedDecision,
  type WholeListDecision,
  wholeListDecision,
  type WholeListRuleOptions,
} from "./kernels/whole_list_decision.ts";

/** What the path needs of the strategy's buffers. */
export interface GpuPathParts {
  streams: readonly StreamStore[];
  measures: Tensor;
  /** EasyCache's measures around the blocks: each a diff, its gather and (output) the copy that keeps it. */
  computed: {
    input: { diff: ResidualDiff; gather: CopyCommand };
    output: { diff: ResidualDiff; gather: CopyCommand; kept: Tensor };
  } | null;
  hidden: Tensor;
}

export class GpuDecidedList {
  readonly #decision: WholeListDecision;
  readonly #owned: { release(): void }[] = [];

  constructor(
    private readonly ctx: GpuContext,
    parts: GpuPathParts,
    blocks: readonly Command[][],
    steps: number,
    rule: WholeListRuleOptions,
  ) {
    const onCompute = (dispatch: Dispatch): ConditionalSlot => ({ dispatch, code: ON_COMPUTE });
    const c = parts.computed;
    const compute = [
      ...(c ? [...c.input.diff.dispatches, ...this.#copy(c.input.gather)] : []),
      ...parts.streams.flatMap((s) => this.#own(copyByDispatch(ctx, s.stream, s.input)).dispatches),
      ...blocks.flat().flatMap((command) => isDispatch(command) ? [command] : this.#copy(command)),
      ...parts.streams.flatMap((s) => s.store.dispatches),
      ...(c
        ? [
          ...c.output.diff.dispatches,
          ...this.#copy(c.output.gather),
          ...this.#own(copyByDispatch(ctx, parts.hidden, c.output.kept)).dispatches,
        ]
        : []),
    ];
    const slots = [
      ...compute.map(onCompute),
      ...parts.streams.flatMap((s) => s.replay.dispatches).map((dispatch) => ({ dispatch, code: ON_CACHED })),
    ];
    this.#decision = wholeListDecision(ctx, parts.measures, slots, steps, rule);
  }

  /** Conditional dispatches a step encodes besides the measure: those of the side that does not run are empty. */
  get slots(): number {
    return this.#decision.slots.length;
  }

  /** After the step's measure: the decision, then both sides. */
  encode(step: number, recorder: StepRecorder): void {
    this.#decision.setStep(step);
    recorder.encode([this.#decision.command, ...this.#decision.slots]);
  }

  /** The log, copied behind the steps forwarded so far (one readback). */
  async settle(recorder: StepRecorder): Promise<LoggedDecision[]> {
    return this.#decision.decode(await recorder.read(this.#decision.state));
  }

  release(): void {
    this.#decision.release();
    for (const op of this.#owned.splice(0)) op.release();
  }

  #copy(command: CopyCommand): Dispatch[] {
    return this.#own(copyAsDispatch(this.ctx, command)).dispatches;
  }

  #own<T extends { release(): void }>(op: T): T {
    this.#owned.push(op);
    return op;
  }
}
