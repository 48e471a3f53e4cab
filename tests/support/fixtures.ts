// Reads the PyTorch reference fixtures (safetensors written by the scripts in tools/, named in __metadata__).
import { readFloat32Tensors, readSafetensorsHeader } from "../../src/model/safetensors.ts";
import type { ModelCard } from "../../src/pipeline/model_card.ts";
import { type GenerationRequest, resolveRequest } from "../../src/pipeline/request.ts";

export interface Fixture {
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  metadata: Record<string, string>;
}

export async function readFixture(path: string): Promise<Fixture> {
  const { metadata } = await readSafetensorsHeader(path);
  return { tensors: await readFloat32Tensors(path), metadata };
}

export function fixtureTensor(fixture: Fixture, name: string): Float32Array {
  const t = fixture.tensors.get(name);
  if (!t) {
    throw new Error(`fixture has no tensor "${name}"; it has ${[...fixture.tensors.keys()].join(", ")}`);
  }
  return t.data;
}

/** A pipeline run fixture's size ("WxH"), steps and guidance, as request fields. */
export function runSettings(fixture: Fixture): { size: string; steps: number; guidance: number } {
  const { width, height, num_inference_steps, guidance_scale } = fixture.metadata;
  return { size: `${width}x${height}`, steps: Number(num_inference_steps), guidance: Number(guidance_scale) };
}

/**
 * The request of a text pipeline run fixture (uncached): its prompts, and with a negative prompt true CFG at
 * the fixture's true_cfg_scale. The run starts from the fixture's latents, so the seed draws nothing.
 */
export function textRunRequest(
  card: ModelCard,
  fixture: Fixture,
  prompts: string[],
  negative: string | null,
): GenerationRequest {
  return resolveRequest(card, {
    prompts,
    ...(negative === null
      ? {}
      : { negativePrompt: negative, true_cfg: Number(fixture.metadata.true_cfg_scale) }),
    ...runSettings(fixture),
    seed: 0,
    shift: 1,
    eta: 0,
    cache: "none",
  });
}
