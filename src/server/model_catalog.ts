// The models a client may name: directories of MODELS_DIR holding a DiT config.json. Names are plain
// ([a-z0-9._-]+) and must resolve (symlinks included) to a directory inside MODELS_DIR, so a request can
// never make the server read elsewhere. Configs are read on the HTTP thread; weights only in the worker.
import { type DitConfig, readConfig } from "../model/mnist_dit/config.ts";
import { ApiError } from "./api_error.ts";

const MODEL_NAME = /^[a-z0-9._-]+$/;

export interface ModelEntry {
  id: string;
  dir: string;
  config: DitConfig;
}

export class ModelCatalog {
  /** Found models only: caching misses would let clients grow the map with made-up names. */
  readonly #entries = new Map<string, Promise<ModelEntry>>();

  constructor(readonly modelsDir: string) {}

  /** Every loadable model, by name. */
  async list(): Promise<ModelEntry[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(this.modelsDir)) {
        if (MODEL_NAME.test(entry.name)) names.push(entry.name);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const entries = await Promise.all(names.sort().map((name) => this.#lookup(name)));
    return entries.filter((e): e is ModelEntry => e !== null);
  }

  /** 400 for a name that is not plain, 404 for one that is not a model inside MODELS_DIR. */
  async get(name: string): Promise<ModelEntry> {
    if (!MODEL_NAME.test(name)) {
      throw new ApiError(
        400,
        `model must be a plain name matching [a-z0-9._-]+, got ${JSON.stringify(name)}`,
        "model",
      );
    }
    const entry = await this.#lookup(name);
    if (entry) return entry;
    const known = (await this.list()).map((e) => e.id);
    throw new ApiError(404, `model "${name}" not found; available: ${known.join(", ") || "none"}`, "model");
  }

  async #lookup(name: string): Promise<ModelEntry | null> {
    const known = this.#entries.get(name);
    if (known) return known;
    const entry = await this.#read(name);
    if (entry) this.#entries.set(name, Promise.resolve(entry));
    return entry;
  }

  async #read(name: string): Promise<ModelEntry | null> {
    try {
      const root = await Deno.realPath(this.modelsDir);
      const dir = await Deno.realPath(`${this.modelsDir}/${name}`);
      if (!dir.startsWith(`${root}/`)) return null;
      return { id: name, dir, config: await readConfig(`${dir}/config.json`) };
    } catch {
      // Missing directory, no config.json, or not a DiT config: not a model a request can name.
      return null;
    }
  }
}
