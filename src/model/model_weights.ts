// What every model class holds: its loaded weights by checkpoint key, and the graphs it built, one per
// input shape, kept so that later requests of that shape allocate nothing.
import type { Tensor } from "../gpu/tensor.ts";

export class ModelWeights {
  constructor(private readonly tensors: Map<string, Tensor>) {}

  /** The tensor of `name`; throws for a key the model never loaded (or after release). */
  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`weight ${name} is not loaded (model released?)`);
    return t;
  }

  /** The tensor of an optional key (a bias the config may leave out). */
  find(name: string): Tensor | undefined {
    return this.tensors.get(name);
  }

  /** Bytes of GPU memory the weights hold, in their stored dtypes. */
  get bytes(): number {
    return [...this.tensors.values()].reduce((n, t) => n + t.byteLength, 0);
  }

  release(): void {
    for (const t of this.tensors.values()) t.release();
    this.tensors.clear();
  }
}

export class GraphCache<G extends { release(): void }> {
  readonly #graphs = new Map<string, G>();

  /** The graph of `key`, built by `build` on first use. */
  get(key: string | number, build: () => G): G {
    let graph = this.#graphs.get(String(key));
    if (!graph) {
      graph = build();
      this.#graphs.set(String(key), graph);
    }
    return graph;
  }

  release(): void {
    for (const g of this.#graphs.values()) g.release();
    this.#graphs.clear();
  }
}
