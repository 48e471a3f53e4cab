// Reading a diffusers pipeline directory's components: model_index.json names each one as
// [library, class] (or [null, null] where the pipeline was saved without it); each is a directory with its
// own config file.
import { exists, readJsonFile } from "../../model/component_config.ts";
import { WeightsError } from "../../model/safetensors.ts";

/** Whether model_index.json lists the component with a class (not null, as diffusers saves an absent one). */
export function listed(index: Record<string, unknown>, name: string): boolean {
  const entry = index[name];
  return Array.isArray(entry) && entry[1] !== null && entry[1] !== undefined;
}

/** The component's config, which must exist: a listed component missing on disk is named now. */
export async function component(
  dir: string,
  index: Record<string, unknown>,
  name: string,
  file = "config.json",
) {
  if (!listed(index, name)) {
    throw new WeightsError(`${dir}/model_index.json: the pipeline needs a "${name}" component`);
  }
  if (!(await exists(`${dir}/${name}`))) {
    throw new WeightsError(
      `${dir}/${name}: directory not found; model_index.json lists "${name}" as ${
        JSON.stringify(index[name])
      }`,
    );
  }
  const path = `${dir}/${name}/${file}`;
  return { path, json: await readJsonFile(path) };
}
