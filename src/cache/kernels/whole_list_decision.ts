// The GPU-side decision of TeaCache and EasyCache (shaders/whole_list_decision.wgsl): one tiny dispatch per
// step turns the step's measures into the step's decision and into indirect dispatch arguments, so both the
// block list (with its stores) and the residual replay are encoded and the GPU runs one of them. The host
// reads the per-step log behind the loop. CPU references: TeaCacheRule and EasyCacheRule.
import type { GpuContext } from "../../gpu/context.ts";
import { bindKernel, type Command, type Dispatch, disposeDispatches, KernelError } from "../../gpu/kernel.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { uniformLayout } from "../../gpu/uniform_layout.ts";
import { type Decision, type Gate, GATES } from "../decision.ts";
import { conditionalDispatches, type ConditionalSlot } from "./conditional_dispatch.ts";
import { decisionKernelSource } from "./decision_abi.ts";

const KERNEL = "whole_list_decision";
const BINDINGS = ["read", "read", "read_write", "read_write", "uniform"] as const;
/** The polynomial's coefficients the uniform holds (TeaCache's authors fit degree 4). */
export const MAX_COEFFICIENTS = 8;
const COEFFICIENT_FIELDS = Array.from(
  { length: MAX_COEFFICIENTS },
  (_, i) => ({ name: `c${i}`, type: "f32" as const }),
);
const PARAMS = uniformLayout("Params", [
  { name: "step", type: "u32" },
  { name: "steps", type: "u32" },
  { name: "slots", type: "u32", note: "conditional dispatches" },
  { name: "rule", type: "u32", note: "1: TeaCache, 2: EasyCache" },
  { name: "ret_steps", type: "u32" },
  { name: "thresh", type: "f32", note: "rel_l1_thresh or thresh" },
  { name: "stride", type: "u32", note: "floats per measure slot" },
  { name: "coefficient_count", type: "u32" },
  ...COEFFICIENT_FIELDS,
]);
const COUNTERS = 8;

export interface WholeListRuleOptions {
  rule: "teacache" | "easycache";
  thresh: number;
  ret_steps: number;
  /** TeaCache's polynomial, highest power first. */
  coefficients?: readonly number[];
}

export interface LoggedDecision extends Decision {
  /** The accumulated estimate the threshold was compared with; null where an earlier gate decided. */
  diff: number | null;
}

export interface WholeListDecision {
  /** The decision dispatch; encode after the step's measure, before the slots. */
  command: Command;
  /** The slots as indirect dispatches, in order. */
  slots: Dispatch[];
  /** [8 + 3 * steps] counters and per-step log. */
  state: Tensor;
  setStep(step: number): void;
  decode(state: Float32Array): LoggedDecision[];
  release(): void;
}

export function wholeListDecision(
  ctx: GpuContext,
  measures: Tensor,
  slots: readonly ConditionalSlot[],
  steps: number,
  o: WholeListRuleOptions,
): WholeListDecision {
  const coefficients = o.coefficients ?? [];
  if (coefficients.length > MAX_COEFFICIENTS) {
    throw new KernelError(
      KERNEL,
      `${coefficients.length} coefficients; the kernel takes ${MAX_COEFFICIENTS} at most`,
    );
  }
  const conditional = conditionalDispatches(ctx, KERNEL, slots);
  const initial = new Float32Array(COUNTERS + 3 * steps);
  initial[2] = -1; // no rate yet
  initial[3] = -1; // no computed output yet
  const state = ctx.pool.upload(initial, [initial.length]);
  const kernel = ctx.kernels.get({
    name: KERNEL,
    source: decisionKernelSource(KERNEL, PARAMS),
    bindings: BINDINGS,
  });
  const uniform = (step: number) =>
    PARAMS.pack(
      {
        step,
        steps,
        slots: slots.length,
        rule: o.rule === "teacache" ? 1 : 2,
        ret_steps: o.ret_steps,
        thresh: o.thresh,
        stride: measures.size / 3,
        coefficient_count: coefficients.length,
        ...Object.fromEntries(COEFFICIENT_FIELDS.map((f, i) => [f.name, coefficients[i] ?? 0])),
      } as Parameters<typeof PARAMS.pack>[0],
    );
  const decision = bindKernel(ctx.gpu, kernel, [measures, conditional.plan, state, conditional.args], [
    1,
    1,
    1,
  ], uniform(0));
  return {
    command: decision,
    slots: conditional.dispatches,
    state,
    setStep(step) {
      if (step < 0 || step >= steps) throw new KernelError(KERNEL, `step ${step} is outside 0..${steps - 1}`);
      ctx.gpu.device.queue.writeBuffer(decision.uniform!, 0, uniform(step));
    },
    decode(values) {
      return Array.from({ length: steps }, (_, s) => {
        const [cached, measured, gate] = values.subarray(COUNTERS + 3 * s, COUNTERS + 3 * s + 3);
        return { cached: cached === 1, diff: measured < 0 ? null : measured, gate: GATES[gate] as Gate };
      });
    },
    release() {
      disposeDispatches([decision]);
      conditional.release();
      state.release();
    },
  };
}
