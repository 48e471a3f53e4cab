// A component loaded on first use (a pipeline's text encoders: a request with precomputed embeddings never
// needs them). Concurrent first uses share one load; a failed load is forgotten, so the next use retries it.
export class LazyLoad<T extends { release(): void }> {
  #loading: Promise<T> | null = null;

  constructor(private readonly load: () => Promise<T>) {}

  get(): Promise<T> {
    if (!this.#loading) {
      this.#loading = this.load();
      this.#loading.catch(() => (this.#loading = null));
    }
    return this.#loading;
  }

  /** Releases what was loaded (or is loading) once it has loaded. */
  release(): void {
    this.#loading?.then((loaded) => loaded.release(), () => {});
  }
}
