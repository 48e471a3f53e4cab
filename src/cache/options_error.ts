// The error every cache option check throws: its message names the option and the allowed range.
export class CacheOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CacheOptionsError";
  }
}
