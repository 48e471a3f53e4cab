// Writes small safetensors files for loader tests (the project's real files come from tools/safetensors_io.py).

export interface TensorToWrite {
  dtype: "F32" | "F16" | "BF16";
  shape: number[];
  data: number[];
}

export function encodeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    let bytes: Uint8Array;
    if (t.dtype === "F32") bytes = new Uint8Array(new Float32Array(t.data).buffer);
    else if (t.dtype === "F16") bytes = new Uint8Array(new Float16Array(t.data).buffer);
    else {bytes = new Uint8Array(
        new Uint16Array(new Uint32Array(new Float32Array(t.data).buffer).map((w) => w >>> 16)).buffer,
      );}
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
