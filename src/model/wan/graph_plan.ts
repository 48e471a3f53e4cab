// What a Wan graph of a given latent size needs, worked out before anything is allocated: the token grid,
// and a check of every activation against the adapter's per-binding limit. A 480p, 81-frame video is a
// 21 x 60 x 104 latent, 21 x 30 x 52 = 32,760 tokens; at 14B width (5120) one [tokens, dim] f32 tensor is
// 671 MB, and the feed-forward's [tokens, 13824] hidden 1.8 GB, past a 2 GiB binding at batch 2. The
// feed-forward therefore runs in row chunks when its hidden does not fit whole: each chunk a divisor of the
// tokens per sample (never straddling two samples, whose gates differ), the largest that fits.
import type { GpuLimits } from "../../gpu/device.ts";
import { formatShape } from "../../gpu/tensor.ts";
import { wanDims, type WanTransformerConfig } from "./config.ts";

/** What a Wan graph is built for: the batch, the LATENT video size (F, H, W) and the text length. */
export interface WanGraphShape {
  batch: number;
  frames: number;
  height: number;
  width: number;
  textTokens: number;
}

export interface WanGraphPlan {
  /** Token grid (frames, rows, columns) after the [1, 2, 2] patches. */
  grid: [number, number, number];
  /** Tokens per sample: the product of the grid. */
  tokens: number;
  /** Rows of one feed-forward chunk: batch * tokens (no chunks) or a divisor of tokens. */
  ffnChunkRows: number;
}

export class WanShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WanShapeError";
  }
}

/** At most this many feed-forward chunks per sample: a token count with no fitting divisor is refused. */
const MAX_FFN_CHUNKS = 4096;

/** The largest divisor of `n` that is at most `cap` (cap >= 1). */
function largestDivisorAtMost(n: number, cap: number): number {
  for (let d = Math.min(n, Math.floor(cap)); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

/** Checks `shape` against the config and the adapter's limits; throws a WanShapeError naming what is wrong. */
export function planWanGraph(
  config: WanTransformerConfig,
  shape: WanGraphShape,
  limits: Pick<GpuLimits, "maxStorageBufferBindingSize" | "maxBufferSize">,
): WanGraphPlan {
  const { batch, frames, height, width, textTokens } = shape;
  for (const [name, value] of Object.entries(shape)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new WanShapeError(`Wan graph: ${name} ${value} must be a positive integer`);
    }
  }
  const [pt, ph, pw] = config.patch_size;
  if (height % ph !== 0 || width % pw !== 0) {
    throw new WanShapeError(
      `Wan graph: latent height ${height} and width ${width} must be multiples of the patch ${ph}x${pw} ` +
        "(video height and width multiples of 16)",
    );
  }
  const grid: [number, number, number] = [frames / pt, height / ph, width / pw];
  const longest = Math.max(...grid);
  if (longest > config.rope_max_seq_len) {
    throw new WanShapeError(
      `Wan graph: token grid ${formatShape(grid)} (frames, rows, columns) exceeds rope_max_seq_len ` +
        `${config.rope_max_seq_len} of the config`,
    );
  }
  const tokens = grid[0] * grid[1] * grid[2];
  const { inner, outChannels, patchVolume } = wanDims(config);
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const activations: [string, number[]][] = [
    ["x", [batch, config.in_channels, frames, height, width]],
    ["patches", [batch, tokens, config.in_channels * patchVolume]],
    ["hidden (and each of normed, q, k, v, attention output)", [batch, tokens, inner]],
    ["encoder_hidden_states", [batch, textTokens, config.text_dim]],
    ["text stream (and its k, v)", [batch, textTokens, inner]],
    ["proj_out output", [batch, tokens, outChannels * patchVolume]],
  ];
  for (const [name, dims] of activations) {
    const bytes = dims.reduce((a, b) => a * b, 4);
    if (bytes > limit) {
      throw new WanShapeError(
        `Wan graph: ${name} ${formatShape(dims)} f32 needs ${bytes} bytes, over the adapter's ` +
          `maxStorageBufferBindingSize / maxBufferSize ${limit}; use a smaller video or batch`,
      );
    }
  }
  const rowBytes = config.ffn_dim * 4;
  if (batch * tokens * rowBytes <= limit) return { grid, tokens, ffnChunkRows: batch * tokens };
  const ffnChunkRows = largestDivisorAtMost(tokens, limit / rowBytes);
  if (ffnChunkRows * rowBytes > limit || tokens / ffnChunkRows > MAX_FFN_CHUNKS) {
    throw new WanShapeError(
      `Wan graph: the feed-forward hidden [${tokens}, ${config.ffn_dim}] per sample has no chunk of rows ` +
        `(a divisor of ${tokens} tokens, at most ${MAX_FFN_CHUNKS} chunks) within the adapter's ` +
        `maxStorageBufferBindingSize / maxBufferSize ${limit}`,
    );
  }
  return { grid, tokens, ffnChunkRows };
}
