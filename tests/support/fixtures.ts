// Reads the PyTorch reference fixtures (safetensors written by the scripts in tools/, named in __metadata__).
import { forEachTensor, readSafetensorsHeader } from "../../src/model/safetensors.ts";

export interface Fixture {
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  metadata: Record<string, string>;
}

export async function readFixture(path: string): Promise<Fixture> {
  const header = await readSafetensorsHeader(path);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  await forEachTensor(header, header.tensors.keys(), (entry, data) => {
    tensors.set(entry.name, { shape: entry.shape, data });
  });
  return { tensors, metadata: header.metadata };
}

export function fixtureTensor(fixture: Fixture, name: string): Float32Array {
  const t = fixture.tensors.get(name);
  if (!t) {
    throw new Error(`fixture has no tensor "${name}"; it has ${[...fixture.tensors.keys()].join(", ")}`);
  }
  return t.data;
}
