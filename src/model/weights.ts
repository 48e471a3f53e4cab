// Strict loading of a checkpoint into GPU tensors: every expected key present with its shape, no unexpected
// keys, finite values. All problems are listed in one error so a bad export is fixed in one round.
import type { GpuContext } from "../gpu/context.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { forEachTensor, readSafetensorsHeader, type SafetensorsHeader, WeightsError } from "./safetensors.ts";

export type ShapeSpec = ReadonlyMap<string, readonly number[]>;

export function checkKeys(header: SafetensorsHeader, expected: ShapeSpec): void {
  const problems: string[] = [];
  const missing = [...expected.keys()].filter((k) => !header.tensors.has(k));
  const unexpected = [...header.tensors.keys()].filter((k) => !expected.has(k));
  if (missing.length) problems.push(`missing tensors: ${missing.join(", ")}`);
  if (unexpected.length) problems.push(`unexpected tensors: ${unexpected.join(", ")}`);
  for (const [name, shape] of expected) {
    const found = header.tensors.get(name)?.shape;
    if (found && found.join() !== shape.join()) {
      problems.push(`tensor "${name}": expected shape [${shape.join(", ")}], found [${found.join(", ")}]`);
    }
  }
  if (problems.length) throw new WeightsError(`${header.path}: ${problems.join("; ")}`);
}

/**
 * Uploads every expected tensor as f32, one at a time (the file is never held whole in memory). On any error
 * the tensors uploaded so far are released, so a failed load leaves nothing behind.
 */
export async function loadWeights(
  ctx: GpuContext,
  path: string,
  expected: ShapeSpec,
): Promise<Map<string, Tensor>> {
  const header = await readSafetensorsHeader(path);
  checkKeys(header, expected);
  const tensors = new Map<string, Tensor>();
  try {
    await forEachTensor(header, expected.keys(), (entry, data) => {
      const bad = data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new WeightsError(`${path}: tensor "${entry.name}" has a non-finite value at index ${bad}`);
      }
      tensors.set(entry.name, ctx.pool.upload(data, entry.shape));
    });
  } catch (e) {
    for (const t of tensors.values()) t.release();
    throw e;
  }
  return tensors;
}
