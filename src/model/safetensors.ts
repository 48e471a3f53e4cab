// Reader for the safetensors format: u64 little-endian header length, a JSON header of
// {name: {dtype, shape, data_offsets: [begin, end]}} (offsets relative to the end of the header), raw
// little-endian data. Tensors are read one at a time so that loading never holds a second copy of a model.

export type SafetensorsDType = "F32" | "F16" | "BF16";

const DTYPE_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };
/** Headers larger than this are not model headers; the cap stops a corrupt length from allocating gigabytes. */
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  path: string;
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

export class WeightsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WeightsError";
  }
}

function fail(path: string, message: string): never {
  throw new WeightsError(`${path}: ${message}`);
}

async function readExactly(
  file: Deno.FsFile,
  position: number,
  length: number,
  path: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(position, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < length) {
    const n = await file.read(out.subarray(filled));
    if (n === null) fail(path, `truncated: wanted ${length} bytes at offset ${position}, file ends first`);
    filled += n;
  }
  return out;
}

function parseEntry(
  path: string,
  name: string,
  raw: unknown,
  dataStart: number,
  fileSize: number,
): TensorEntry {
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof e !== "object" || e === null) fail(path, `tensor "${name}": header entry is not an object`);
  if (typeof e.dtype !== "string" || !(e.dtype in DTYPE_BYTES)) {
    fail(path, `tensor "${name}": dtype ${JSON.stringify(e.dtype)} is not one of F32, F16, BF16`);
  }
  const dtype = e.dtype as SafetensorsDType;
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    fail(path, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  const offsets = e.data_offsets;
  if (
    !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)
  ) {
    fail(path, `tensor "${name}": data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  const expected = shape.reduce((a: number, b: number) => a * b, 1) * DTYPE_BYTES[dtype];
  if (end - begin !== expected) {
    fail(
      path,
      `tensor "${name}": ${end - begin} bytes stored, shape [${shape.join(", ")}] ${dtype} needs ${expected}`,
    );
  }
  if (dataStart + end > fileSize) {
    fail(path, `tensor "${name}": data ends at byte ${dataStart + end}, file has ${fileSize} (truncated?)`);
  }
  return { name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end };
}

/** The header's length from the file's first 8 bytes, checked against the file's size. */
function headerLength(path: string, first: Uint8Array, fileSize: number): number {
  if (fileSize < 8) fail(path, `file of ${fileSize} bytes is too short to be safetensors`);
  const length = Number(new DataView(first.buffer, first.byteOffset, 8).getBigUint64(0, true));
  if (length > MAX_HEADER_BYTES || 8 + length > fileSize) {
    fail(path, `header length ${length} does not fit the file of ${fileSize} bytes (corrupt?)`);
  }
  return length;
}

/** The tensor entries and metadata of a header's JSON bytes, checked against the file's size. */
function parseHeader(path: string, bytes: Uint8Array, fileSize: number): SafetensorsHeader {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    fail(path, `header is not valid JSON (${(e as Error).message})`);
  }
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") metadata = raw as Record<string, string>;
    else tensors.set(name, parseEntry(path, name, raw, 8 + bytes.length, fileSize));
  }
  return { path, tensors, metadata };
}

export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(path, "file not found");
    throw e;
  }
  try {
    const fileSize = (await file.stat()).size;
    const length = headerLength(path, await readExactly(file, 0, Math.min(8, fileSize), path), fileSize);
    return parseHeader(path, await readExactly(file, 8, length, path), fileSize);
  } finally {
    file.close();
  }
}

/** Decodes one tensor to float32; F16 and BF16 are widened exactly. */
export function decodeToFloat32(dtype: SafetensorsDType, bytes: Uint8Array): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === "F32") {
    return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4).slice();
  }
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
  if (dtype === "F16") {
    return Float32Array.from(new Float16Array(halves.buffer, halves.byteOffset, halves.length));
  }
  // bfloat16 is the top half of a float32.
  const words = new Uint32Array(halves.length);
  for (let i = 0; i < halves.length; i++) words[i] = halves[i] << 16;
  return new Float32Array(words.buffer);
}

/** Reads tensors one by one, in file order, handing each one's stored bytes to `use` before reading the next. */
export async function forEachTensorBytes(
  header: SafetensorsHeader,
  names: Iterable<string>,
  use: (entry: TensorEntry, bytes: Uint8Array) => void | Promise<void>,
): Promise<void> {
  const entries = [...names].map((n) => header.tensors.get(n)!).sort((a, b) => a.begin - b.begin);
  const file = await Deno.open(header.path, { read: true });
  try {
    for (const entry of entries) {
      await use(entry, await readExactly(file, entry.begin, entry.end - entry.begin, header.path));
    }
  } finally {
    file.close();
  }
}

/** forEachTensorBytes with every tensor decoded to float32. */
export function forEachTensor(
  header: SafetensorsHeader,
  names: Iterable<string>,
  use: (entry: TensorEntry, data: Float32Array) => void | Promise<void>,
): Promise<void> {
  return forEachTensorBytes(header, names, (entry, bytes) => use(entry, decodeToFloat32(entry.dtype, bytes)));
}

/** A tensor decoded to float32, row-major. */
export interface Float32Tensor {
  shape: number[];
  data: Float32Array;
}

/** Every tensor of a (small) file decoded to float32: inputs such as --latents and reference fixtures. */
export async function readFloat32Tensors(path: string): Promise<Map<string, Float32Tensor>> {
  const header = await readSafetensorsHeader(path);
  const tensors = new Map<string, Float32Tensor>();
  await forEachTensor(
    header,
    header.tensors.keys(),
    (entry, data) => void tensors.set(entry.name, { shape: entry.shape, data }),
  );
  return tensors;
}

/**
 * Every tensor of a safetensors file held in memory (an upload) decoded to float32; `name` stands for its
 * path in errors.
 */
export function decodeFloat32Tensors(bytes: Uint8Array, name: string): Map<string, Float32Tensor> {
  const length = headerLength(name, bytes, bytes.length);
  const header = parseHeader(name, bytes.subarray(8, 8 + length), bytes.length);
  return new Map(
    [...header.tensors.values()].map((e) => [e.name, {
      shape: e.shape,
      data: decodeToFloat32(e.dtype, bytes.subarray(e.begin, e.end)),
    }]),
  );
}
