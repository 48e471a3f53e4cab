// Collects what a graph or a pipeline stage allocates so that one release() frees all of it, in reverse.

export interface Releasable {
  release(): void;
}

export class Owned implements Releasable {
  readonly #items: Releasable[] = [];

  add<T extends Releasable>(item: T): T {
    this.#items.push(item);
    return item;
  }

  release(): void {
    for (const item of this.#items.splice(0).reverse()) item.release();
  }
}
