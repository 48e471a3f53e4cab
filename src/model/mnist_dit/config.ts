// config.json beside a checkpoint, diffusers style. `_class_name` picks the architecture; the fields the
// engine relies on are validated, the rest (training provenance) is kept as it is.
import { z } from "zod";
import { WeightsError } from "../safetensors.ts";

const positiveInt = z.number().int().positive();

export const ditConfigSchema = z.looseObject({
  _class_name: z.literal("MnistDiT"),
  sample_size: positiveInt,
  patch_size: positiveInt,
  in_channels: positiveInt,
  out_channels: positiveInt,
  hidden_size: positiveInt,
  depth: positiveInt,
  num_heads: positiveInt,
  mlp_ratio: z.number().positive(),
  num_classes: positiveInt,
  null_class: z.number().int().nonnegative(),
  class_names: z.array(z.string().min(1)),
  class_words: z.array(z.string().min(1)).optional(),
  norm_eps: z.number().positive(),
  timestep_scale: z.number().positive(),
  prediction: z.literal("flow_velocity"),
}).check((ctx) => {
  const c = ctx.value;
  const problem = (message: string, path: string) =>
    ctx.issues.push({ code: "custom", message, path: [path], input: c });
  if (c.sample_size % c.patch_size !== 0) problem("must divide sample_size", "patch_size");
  if (c.hidden_size % c.num_heads !== 0) problem("must divide hidden_size", "num_heads");
  if (c.class_names.length !== c.num_classes) {
    problem(`must list num_classes (${c.num_classes}) names`, "class_names");
  }
  if (c.class_words && c.class_words.length !== c.num_classes) {
    problem(`must list num_classes (${c.num_classes}) words`, "class_words");
  }
  if (c.null_class !== c.num_classes) {
    problem(`must be num_classes (${c.num_classes}), the CFG null class`, "null_class");
  }
});

export type DitConfig = z.infer<typeof ditConfigSchema>;

export const ARCHITECTURES = ["MnistDiT"] as const;

export async function readConfig(path: string): Promise<DitConfig> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new WeightsError(`${path}: file not found`);
    throw new WeightsError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const name = (json as { _class_name?: unknown })?._class_name;
  if (!ARCHITECTURES.includes(name as (typeof ARCHITECTURES)[number])) {
    throw new WeightsError(
      `${path}: unknown architecture _class_name ${JSON.stringify(name)}; supported: ${
        ARCHITECTURES.join(", ")
      }`,
    );
  }
  const parsed = ditConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new WeightsError(`${path}: ${issues.join("; ")}`);
  }
  return parsed.data;
}
