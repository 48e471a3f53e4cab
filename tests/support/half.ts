// F16 and BF16 encodings of test values, as safetensors stores them: the bytes to upload and the values they
// round to (what a kernel reading them must compute with).
import { decodeToFloat32 } from "../../src/model/safetensors.ts";

export type Half = "f16" | "bf16";

/** Round to nearest even into the upper half of the float32 bits. */
function toBf16(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  return Uint16Array.from(words, (w) => (w + 0x7fff + ((w >>> 16) & 1)) >>> 16);
}

export function encodeHalf(values: Float32Array, dtype: Half): { bytes: Uint8Array; rounded: Float32Array } {
  const halves = dtype === "f16"
    ? new Uint16Array(Float16Array.from(values).buffer)
    : toBf16(Float32Array.from(values));
  const bytes = new Uint8Array(halves.buffer);
  return { bytes, rounded: decodeToFloat32(dtype === "f16" ? "F16" : "BF16", bytes) };
}
