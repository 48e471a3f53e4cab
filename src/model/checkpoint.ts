// A component's weights as diffusers and transformers save them: one `<stem>.safetensors`, or shards listed by
// `<stem>.safetensors.index.json` ({"weight_map": {tensor: shard file}}). Only headers are read here; tensor
// data is streamed when the weights are loaded. Every problem names the file it is about.
import {
  readSafetensorsHeader,
  type SafetensorsHeader,
  type TensorEntry,
  WeightsError,
} from "./safetensors.ts";

/** diffusers' file stem for models; transformers' (text encoders) is "model". */
export const DIFFUSERS_STEM = "diffusion_pytorch_model";

export interface StoredTensor {
  header: SafetensorsHeader;
  entry: TensorEntry;
}

export interface Checkpoint {
  dir: string;
  /** Where the tensor list came from: the single file or the index. */
  source: string;
  files: SafetensorsHeader[];
  tensors: Map<string, StoredTensor>;
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function single(dir: string, header: SafetensorsHeader): Checkpoint {
  const tensors = new Map([...header.tensors].map(([name, entry]) => [name, { header, entry }]));
  return { dir, source: header.path, files: [header], tensors };
}

async function sharded(dir: string, indexPath: string): Promise<Checkpoint> {
  let map: Record<string, unknown>;
  try {
    map = JSON.parse(await Deno.readTextFile(indexPath)).weight_map;
  } catch (e) {
    throw new WeightsError(`${indexPath}: not a safetensors index (${(e as Error).message})`);
  }
  if (typeof map !== "object" || map === null) {
    throw new WeightsError(`${indexPath}: no "weight_map" object of tensor -> shard file`);
  }
  const shardNames = [...new Set(Object.values(map))];
  const bad = shardNames.find((s) => typeof s !== "string" || s.includes("/") || s.startsWith("."));
  if (bad !== undefined) {
    throw new WeightsError(`${indexPath}: shard ${JSON.stringify(bad)} is not a file name`);
  }
  const headers = new Map<string, SafetensorsHeader>();
  for (const shard of shardNames as string[]) {
    const path = `${dir}/${shard}`;
    if (!(await exists(path))) throw new WeightsError(`${path}: file not found (named by ${indexPath})`);
    headers.set(shard, await readSafetensorsHeader(path));
  }
  const tensors = new Map<string, StoredTensor>();
  for (const [name, shard] of Object.entries(map as Record<string, string>)) {
    const header = headers.get(shard)!;
    const entry = header.tensors.get(name);
    if (!entry) {
      throw new WeightsError(`${header.path}: tensor "${name}" listed by ${indexPath} is not in it`);
    }
    tensors.set(name, { header, entry });
  }
  return { dir, source: indexPath, files: [...headers.values()], tensors };
}

/** Opens `<dir>/<stem>.safetensors` or its sharded index; throws naming what is missing. */
export async function openCheckpoint(dir: string, stem = DIFFUSERS_STEM): Promise<Checkpoint> {
  const file = `${dir}/${stem}.safetensors`;
  if (await exists(file)) return single(dir, await readSafetensorsHeader(file));
  const index = `${file}.index.json`;
  if (await exists(index)) return await sharded(dir, index);
  const legacy = await exists(`${dir}/${stem}.bin`);
  throw new WeightsError(
    `${dir}: no ${stem}.safetensors or ${stem}.safetensors.index.json` +
      (legacy
        ? ` (${stem}.bin is PyTorch's pickle format, which is not read: convert it to safetensors)`
        : ""),
  );
}
