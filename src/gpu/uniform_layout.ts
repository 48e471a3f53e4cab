// A uniform struct declared once, in TypeScript: the WGSL `struct` text is generated from the same field list
// that packs the values, so the two can never drift apart (a field added, reordered or retyped on one side).
import { packUniform } from "./kernel.ts";

export type UniformType = "u32" | "i32" | "f32";

export interface UniformField<K extends string> {
  name: K;
  type: UniformType;
  /** Shown beside the field in the generated WGSL. */
  note?: string;
}

export interface UniformLayout<K extends string> {
  /** `struct <name> { ... }` for the shader. */
  readonly wgsl: string;
  /** The uniform bytes, fields in declaration order. */
  pack(values: Record<K, number>): ArrayBuffer;
}

export function uniformLayout<K extends string>(
  name: string,
  fields: readonly UniformField<K>[],
): UniformLayout<K> {
  const lines = fields.map((f) => `  ${f.name}: ${f.type},${f.note ? ` // ${f.note}` : ""}`);
  return {
    wgsl: `struct ${name} {\n${lines.join("\n")}\n}\n`,
    pack: (values) => packUniform(fields.map((f) => [f.type, values[f.name]])),
  };
}
