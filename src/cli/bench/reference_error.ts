// How far the engine's outputs are from PyTorch's on the same inputs in the same run: a benchmark row is only
// worth its speed if the kernels behind it compute the model.
import type { Float32Tensor } from "../../model/safetensors.ts";
import { maxAbsDiff } from "./harness.ts";

export interface OutputError {
  maxAbs: number;
  /** maxAbs over the largest |value| of the reference: a scale-free figure for outputs of any magnitude. */
  relative: number;
}

/** Each of the engine's outputs against the reference's tensor of the same name and size. */
export function outputErrors(
  engine: Record<string, Float32Array>,
  reference: Map<string, Float32Tensor>,
): Record<string, OutputError> {
  const errors: Record<string, OutputError> = {};
  for (const [name, values] of Object.entries(engine)) {
    const ref = reference.get(name)?.data;
    if (ref?.length !== values.length) {
      throw new Error(
        `reference output ${name}: ${ref?.length ?? "no"} values, the engine gave ${values.length}`,
      );
    }
    const maxAbs = maxAbsDiff(values, ref);
    errors[name] = { maxAbs, relative: maxAbs / ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0) };
  }
  return errors;
}
