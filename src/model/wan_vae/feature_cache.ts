// diffusers' feat_cache of AutoencoderKLWan._decode, on the GPU: per causal convolution, the last KT - 1 (= CACHE_T
// = 2) frames of its input, which its next chunk reads before its own frames. diffusers starts from no cache
// (zero padding), keeps the one frame of a one-frame chunk after the previous chunk's last, and skips the
// upsamplers' time_conv on the first chunk ("Rep") and zero-pads it on the second. All of that is the same as
// history tensors that start as zeros and always keep the last KT - 1 frames of [history, x]: zeroed before
// the first chunk, updated by buffer copies after each convolution reads them.
import type { ActivationArena } from "../../gpu/activation_arena.ts";
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand } from "../../gpu/kernel.ts";
import type { Tensor } from "../../gpu/tensor.ts";

/** Zeros copied over the histories piece by piece: a bounded buffer, however large the frames. */
const MAX_ZERO_BYTES = 8 * 1024 * 1024;

export class FeatureCache {
  readonly #histories = new Map<string, Tensor>();
  #zeros: Tensor | null = null;

  constructor(private readonly ctx: GpuContext, private readonly arena: ActivationArena) {}

  /** The history [frames, B, C, H, W] of convolution `name`, made on first use; x [T, B, C, H, W] is its input. */
  history(name: string, x: Tensor, frames: number): Tensor {
    let h = this.#histories.get(name);
    if (!h) {
      h = this.ctx.pool.tensor([frames, ...x.shape.slice(1)]);
      this.#histories.set(name, h);
    }
    return h;
  }

  /**
   * After convolution `name` read its history and x [T, B, C, H, W]: history = the last P frames of
   * [history, x]. `zero` says the history holds zeros (the first chunk), which then need no shifting.
   */
  update(name: string, x: Tensor, zero: boolean): Command[] {
    const h = this.#histories.get(name)!;
    const [p, frames] = [h.shape[0], x.shape[0]];
    const frame = h.byteLength / p;
    const label = `${name} history`;
    if (frames >= p) return [copyCommand(label, x, h, { srcOffset: (frames - p) * frame, bytes: p * frame })];
    const fromX = copyCommand(label, x, h, { dstOffset: (p - frames) * frame });
    if (zero) return [fromX];
    // A buffer cannot be copied onto itself: the kept frames move to the front through a scratch tensor.
    const kept = (p - frames) * frame;
    const scratch = this.arena.take([kept / 4]);
    this.arena.give(scratch);
    return [
      copyCommand(label, h, scratch, { srcOffset: frames * frame, bytes: kept }),
      copyCommand(label, scratch, h, { bytes: kept }),
      fromX,
    ];
  }

  /** Commands zeroing every history: what the first chunk expects. */
  reset(): Command[] {
    const largest = Math.max(4, ...[...this.#histories.values()].map((h) => h.byteLength));
    if (!this.#zeros) {
      const size = Math.min(largest, MAX_ZERO_BYTES) / 4;
      this.#zeros = this.ctx.pool.upload(new Float32Array(size), [size]);
    }
    const zeros = this.#zeros;
    return [...this.#histories].flatMap(([name, h]) => {
      const pieces = Math.ceil(h.byteLength / zeros.byteLength);
      return Array.from({ length: pieces }, (_, k) => {
        const dstOffset = k * zeros.byteLength;
        const bytes = Math.min(zeros.byteLength, h.byteLength - dstOffset);
        return copyCommand(`${name} history reset`, zeros, h, { dstOffset, bytes });
      });
    });
  }

  /** Bytes of the histories and the zeros they are reset from. */
  get bytes(): number {
    return [...this.#histories.values()].reduce((n, h) => n + h.byteLength, this.#zeros?.byteLength ?? 0);
  }

  release(): void {
    for (const h of this.#histories.values()) h.release();
    this.#histories.clear();
    this.#zeros?.release();
    this.#zeros = null;
  }
}
