// The models a client may name: directories of MODELS_DIR that hold a supported model (a diffusers pipeline
// with model_index.json, or the embedded MnistDiT). Names are plain ([a-z0-9._-]+) and must resolve
// (symlinks included) to a directory inside MODELS_DIR, so a request can never make the server read
// elsewhere. Model cards (JSON only) are read on the HTTP thread; weights only in the worker. A directory
// that looks like a model but does not load is named with its problem, not listed.
import { WeightsError } from "../model/safetensors.ts";
import { type ModelCard, readModelCard } from "../pipeline/model_card.ts";
import { ApiError } from "./api_error.ts";

const MODEL_NAME = /^[a-z0-9._-]+$/;

export interface ModelEntry {
  id: string;
  dir: string;
  card: ModelCard;
  /** When the directory was last modified (seconds since the epoch): the OpenAI list's `created`. */
  created: number;
}

/** A directory that looks like a model but cannot be read as one. */
interface Problem {
  problem: string;
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
    return entries.filter((e): e is ModelEntry => e !== null && !("problem" in e));
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
    if (entry && "problem" in entry) {
      throw new ApiError(404, `model "${name}" cannot be used: ${entry.problem}`, "model");
    }
    if (entry) return entry;
    const known = (await this.list()).map((e) => e.id);
    throw new ApiError(404, `model "${name}" not found; available: ${known.join(", ") || "none"}`, "model");
  }

  async #lookup(name: string): Promise<ModelEntry | Problem | null> {
    const known = this.#entries.get(name);
    if (known) return known;
    const entry = await this.#read(name);
    if (entry && !("problem" in entry)) this.#entries.set(name, Promise.resolve(entry));
    return entry;
  }

  async #read(name: string): Promise<ModelEntry | Problem | null> {
    let dir: string;
    try {
      const root = await Deno.realPath(this.modelsDir);
      dir = await Deno.realPath(`${this.modelsDir}/${name}`);
      if (!dir.startsWith(`${root}/`) || !(await Deno.stat(dir)).isDirectory) return null;
    } catch {
      return null; // no such directory inside MODELS_DIR
    }
    try {
      const created = Math.floor(((await Deno.stat(dir)).mtime?.getTime() ?? 0) / 1000);
      return { id: name, dir, card: await readModelCard(dir), created };
    } catch (e) {
      if (!(e instanceof WeightsError)) throw e;
      // A directory with neither model_index.json nor config.json is not a model at all.
      return /no model_index.json or config.json/.test(e.message) ? null : { problem: e.message };
    }
  }
}
