// Weights stay on the GPU in the dtype they were stored in (F32, F16, BF16); kernels that read them get a
// binding of the stored words and a load function that widens to f32 (WGSL text, generated per dtype), so a
// model never needs an f32 copy of its matrices. F16 and BF16 pack two elements per u32, element 2j in the
// low half (little endian, as safetensors stores them).
import type { DType } from "../gpu/tensor.ts";

export type WeightDType = "f32" | "f16" | "bf16";

export function isWeightDType(dtype: DType): dtype is WeightDType {
  return dtype === "f32" || dtype === "f16" || dtype === "bf16";
}

const VEC4_LOAD: Record<WeightDType, [string, string]> = {
  f32: ["vec4<f32>", "return NAME[i];"],
  f16: ["vec2<u32>", "let v = NAME[i];\n  return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));"],
  bf16: [
    "vec2<u32>",
    "let v = NAME[i];\n  return vec4<f32>(bitcast<f32>(v.x << 16u), bitcast<f32>(v.x & 0xffff0000u), " +
    "bitcast<f32>(v.y << 16u), bitcast<f32>(v.y & 0xffff0000u));",
  ],
};

const SCALAR_LOAD: Record<WeightDType, [string, string]> = {
  f32: ["f32", "return NAME[i];"],
  f16: ["u32", "return unpack2x16float(NAME[i >> 1u])[i & 1u];"],
  bf16: [
    "u32",
    "let v = NAME[i >> 1u];\n  return bitcast<f32>(select(v << 16u, v & 0xffff0000u, (i & 1u) == 1u));",
  ],
};

/**
 * `@group(0) @binding(b) var<storage, read> NAME: array<...>;` and `fn load_NAME(i: u32) -> f32 | vec4<f32>`,
 * which reads element i (or the vec4 of elements 4i..4i+3) as f32.
 */
export function weightBinding(name: string, binding: number, dtype: WeightDType, vec4: boolean): string {
  const [stored, body] = (vec4 ? VEC4_LOAD : SCALAR_LOAD)[dtype];
  const value = vec4 ? "vec4<f32>" : "f32";
  return [
    `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${stored}>;`,
    `fn load_${name}(i: u32) -> ${value} {`,
    `  ${body.replaceAll("NAME", name)}`,
    "}",
  ].join("\n");
}
