// diffusers' tiled VAE decode (AutoencoderKL.enable_tiling): latents are cut into overlapping tiles of
// sample_size / scale latent pixels (a quarter overlap), each tile is decoded on its own, and the decoded
// tiles are blended linearly over the overlap into the tile below and to the right, then cropped and joined.
// A large image then needs only one tile's activations at a time, so it fits the adapter's binding limits;
// the result is diffusers' tiled result, which differs slightly from an untiled decode near the seams.
import type { GpuContext } from "../../gpu/context.ts";
import { submitDispatches } from "../../gpu/kernel.ts";
import { readFloats } from "../../gpu/readback.ts";
import type { AutoencoderKlConfig } from "./config.ts";
import { vaeScale } from "./config.ts";
import type { AutoencoderKlDecoder } from "./decoder.ts";

const OVERLAP = 0.25;

/** An NCHW block of values on the host. */
interface Block {
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface TileSizes {
  latent: number;
  sample: number;
}

/** diffusers' tile_latent_min_size and tile_sample_min_size. */
export function tileSizes(config: AutoencoderKlConfig): TileSizes {
  return { latent: Math.floor(config.sample_size / vaeScale(config)), sample: config.sample_size };
}

/** Rows [y0, y1) and columns [x0, x1) of an NCHW block. */
function crop(block: Block, y0: number, y1: number, x0: number, x1: number): Block {
  const [n, c, h, w] = block.shape;
  const [ch, cw] = [Math.min(y1, h) - y0, Math.min(x1, w) - x0];
  const data = new Float32Array(n * c * ch * cw);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < ch; y++) {
      const from = (p * h + y0 + y) * w + x0;
      data.set(block.data.subarray(from, from + cw), (p * ch + y) * cw);
    }
  }
  return { data, shape: [n, c, ch, cw] };
}

/** b's first rows (or columns) become a's last ones fading into b's: diffusers' blend_v and blend_h. */
function blend(a: Block, b: Block, extent: number, axis: "v" | "h"): void {
  const [n, c, bh, bw] = b.shape;
  const [, , ah, aw] = a.shape;
  const e = Math.min(axis === "v" ? ah : aw, axis === "v" ? bh : bw, extent);
  for (let p = 0; p < n * c; p++) {
    for (let k = 0; k < e; k++) {
      const t = k / e;
      const lines = axis === "v" ? bw : bh;
      for (let l = 0; l < lines; l++) {
        const bi = axis === "v" ? (p * bh + k) * bw + l : (p * bh + l) * bw + k;
        const ai = axis === "v" ? (p * ah + ah - e + k) * aw + l : (p * ah + l) * aw + aw - e + k;
        b.data[bi] = a.data[ai] * (1 - t) + b.data[bi] * t;
      }
    }
  }
}

/** Concatenates blocks of equal height along the width, or of equal width along the height. */
function join(blocks: Block[], axis: "v" | "h"): Block {
  const [n, c] = blocks[0].shape;
  const height = axis === "v" ? blocks.reduce((s, b) => s + b.shape[2], 0) : blocks[0].shape[2];
  const width = axis === "h" ? blocks.reduce((s, b) => s + b.shape[3], 0) : blocks[0].shape[3];
  const data = new Float32Array(n * c * height * width);
  let offset = 0;
  for (const b of blocks) {
    const [, , h, w] = b.shape;
    for (let p = 0; p < n * c; p++) {
      for (let y = 0; y < h; y++) {
        const to = axis === "v" ? (p * height + offset + y) * width : (p * height + y) * width + offset;
        data.set(b.data.subarray((p * h + y) * w, (p * h + y + 1) * w), to);
      }
    }
    offset += axis === "v" ? h : w;
  }
  return { data, shape: [n, c, height, width] };
}

async function decodeTile(ctx: GpuContext, vae: AutoencoderKlDecoder, z: Block): Promise<Block> {
  const graph = vae.graph(z.shape);
  ctx.pool.write(graph.z, z.data);
  submitDispatches(ctx.gpu, graph.commands);
  return { data: await readFloats(ctx.gpu, graph.output), shape: graph.output.shape as Block["shape"] };
}

/** Decodes latents [B, C, h, w] (already divided by scaling_factor) tile by tile, as diffusers does. */
export async function decodeTiled(
  ctx: GpuContext,
  vae: AutoencoderKlDecoder,
  z: Block,
  sizes = tileSizes(vae.config),
): Promise<Block> {
  const step = Math.floor(sizes.latent * (1 - OVERLAP));
  const extent = Math.floor(sizes.sample * OVERLAP);
  const limit = sizes.sample - extent;
  const [, , h, w] = z.shape;
  const rows: Block[][] = [];
  for (let i = 0; i < h; i += step) {
    const row: Block[] = [];
    for (let j = 0; j < w; j += step) {
      row.push(await decodeTile(ctx, vae, crop(z, i, i + sizes.latent, j, j + sizes.latent)));
    }
    rows.push(row);
  }
  const joined = rows.map((row, i) => {
    const kept = row.map((tile, j) => {
      if (i > 0) blend(rows[i - 1][j], tile, extent, "v");
      if (j > 0) blend(row[j - 1], tile, extent, "h");
      return crop(tile, 0, limit, 0, limit);
    });
    return join(kept, "h");
  });
  return join(joined, "v");
}

/**
 * Bytes of the decoder's largest activation for latents `shape` (channels x pixels at each resolution, the
 * mid block's fused q/k/v included): above the adapter's binding limit, the decode has to be tiled.
 */
export function largestActivationBytes(config: AutoencoderKlConfig, shape: readonly number[]): number {
  const [batch, , h, w] = shape;
  const reversed = [...config.block_out_channels].reverse();
  let largest = 3 * reversed[0] * h * w;
  reversed.forEach((channels, i) => {
    const pixels = h * w * 4 ** i;
    largest = Math.max(largest, Math.max(channels, reversed[Math.max(0, i - 1)]) * pixels);
    if (i < reversed.length - 1) largest = Math.max(largest, channels * pixels * 4);
  });
  return 4 * batch * largest;
}
