// What a diffusers layout has no field for, kept in model_index.json under "_ditserve": diffusers drops keys
// that start with "_" when it loads a pipeline, so the directory stays a plain diffusers one. `size` pins a
// model trained at one resolution to it (any other size is refused, as for a DiT checkpoint); `description`
// is what /v1/models tells users about the model (what it was trained on); `steps` is the default step count
// the model was tuned for, in place of the pipeline's.
import { z } from "zod";
import { parseConfig } from "../../model/component_config.ts";

const sectionSchema = z.object({
  size: z.string().regex(/^[1-9]\d*x[1-9]\d*$/, 'must be "WxH" in pixels, such as "32x32"').optional(),
  description: z.string().min(1).optional(),
  steps: z.number().int().min(1).max(1000).optional(),
}).strict();

export interface DitserveSection {
  size: { width: number; height: number } | null;
  description: string | null;
  steps: number | null;
}

export function ditserveSection(dir: string, index: Record<string, unknown>): DitserveSection {
  const raw = index._ditserve;
  if (raw === undefined) return { size: null, description: null, steps: null };
  const section = parseConfig(`${dir}/model_index.json: _ditserve`, raw, sectionSchema);
  const [width, height] = section.size?.split("x").map(Number) ?? [];
  return {
    size: section.size ? { width, height } : null,
    description: section.description ?? null,
    steps: section.steps ?? null,
  };
}
