// The decoder of diffusers' AutoencoderKLWan (Wan2.1), computed as vae.decode computes it: one latent frame at
// a time through the chunk graphs of ./chunk_graph.ts with the causal convolutions' feature cache, the first
// chunk giving one frame and every later one 2^(upsample3d levels) (Wan2.1: 4), clamped to [-1, 1]. Each
// chunk's frames are read back as soon as they are decoded, so the GPU holds the weights, one chunk's
// activations and the cache whatever the length of the video. Field names follow the checkpoint keys; the
// encoder's tensors are ignored.
import type { GpuContext } from "../../gpu/context.ts";
import type { Command } from "../../gpu/kernel.ts";
import { copyCommand, KernelError } from "../../gpu/kernel.ts";
import { StepRecorder } from "../../gpu/step_recorder.ts";
import { formatShape, type Tensor } from "../../gpu/tensor.ts";
import { channelAffine } from "../../ops/channel_affine.ts";
import { GraphCache, ModelWeights } from "../model_weights.ts";
import { loadWeights, type ShapeSpec } from "../weights.ts";
import { buildChunkGraphs, type ChunkGraphs } from "./chunk_graph.ts";
import { decoderDims, upBlocks, type WanVaeConfig, wanVaeScale } from "./config.ts";

/** [B, out_channels, frames, H, W] */
export type VideoShape = [number, number, number, number, number];

/** Frames [start, start + frames) of the video, clamped to [-1, 1]. */
export interface VideoFrames {
  /** [B, out_channels, frames, H, W] */
  data: Float32Array;
  shape: VideoShape;
  start: number;
}

export interface DecodedFrames {
  /** [B x T, out_channels, H, W] in [-1, 1]: video b's frame t at row b x T + t. */
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface DecodedVideo {
  /** [B, out_channels, frames, H, W] in [-1, 1]. */
  data: Float32Array;
  shape: VideoShape;
}

type Shapes = [string, number[]][];

function conv3d(name: string, out: number, inp: number, temporal: number, k: number): Shapes {
  return [[`${name}.weight`, [out, inp, temporal, k, k]], [`${name}.bias`, [out]]];
}

function resnet(name: string, inp: number, out: number): Shapes {
  return [
    [`${name}.norm1.gamma`, [inp, 1, 1, 1]],
    ...conv3d(`${name}.conv1`, out, inp, 3, 3),
    [`${name}.norm2.gamma`, [out, 1, 1, 1]],
    ...conv3d(`${name}.conv2`, out, out, 3, 3),
    ...(inp !== out ? conv3d(`${name}.conv_shortcut`, out, inp, 1, 1) : []),
  ];
}

export function decoderShapes(c: WanVaeConfig): ShapeSpec {
  const top = decoderDims(c)[0];
  const d = "decoder";
  const attention = `${d}.mid_block.attentions.0`;
  const shapes: Shapes = [
    ...conv3d("post_quant_conv", c.z_dim, c.z_dim, 1, 1),
    ...conv3d(`${d}.conv_in`, top, c.z_dim, 3, 3),
    ...resnet(`${d}.mid_block.resnets.0`, top, top),
    [`${attention}.norm.gamma`, [top, 1, 1]],
    [`${attention}.to_qkv.weight`, [3 * top, top, 1, 1]],
    [`${attention}.to_qkv.bias`, [3 * top]],
    [`${attention}.proj.weight`, [top, top, 1, 1]],
    [`${attention}.proj.bias`, [top]],
    ...resnet(`${d}.mid_block.resnets.1`, top, top),
  ];
  for (const [i, block] of upBlocks(c).entries()) {
    const out = block.outChannels;
    for (let j = 0; j <= c.num_res_blocks; j++) {
      shapes.push(...resnet(`${d}.up_blocks.${i}.resnets.${j}`, j === 0 ? block.inChannels : out, out));
    }
    const up = `${d}.up_blocks.${i}.upsamplers.0`;
    if (block.upsample === "3d") shapes.push(...conv3d(`${up}.time_conv`, 2 * out, out, 3, 1));
    if (block.upsample) {
      const half = Math.floor(out / 2);
      shapes.push([`${up}.resample.1.weight`, [half, out, 3, 3]], [`${up}.resample.1.bias`, [half]]);
    }
  }
  const last = upBlocks(c).at(-1)!.outChannels;
  shapes.push(
    [`${d}.norm_out.gamma`, [last, 1, 1, 1]],
    ...conv3d(`${d}.conv_out`, c.out_channels, last, 3, 3),
  );
  return new Map(shapes);
}

/** Tensors the decoder does not use: the encoder and its quant_conv. */
const encoderOnly = (name: string) => name.startsWith("encoder.") || name.startsWith("quant_conv.");

/** The [B, C, T, H, W] layout of frame-major frames [T, B, C, H, W], clamped to [-1, 1] as _decode does. */
function videoLayout(frames: Float32Array, shape: readonly number[]): Float32Array {
  const [t, b, c, h, w] = shape;
  const plane = h * w;
  const out = new Float32Array(frames.length);
  for (let f = 0; f < t; f++) {
    for (let s = 0; s < b; s++) {
      for (let k = 0; k < c; k++) {
        const from = ((f * b + s) * c + k) * plane;
        const to = ((s * c + k) * t + f) * plane;
        for (let i = 0; i < plane; i++) out[to + i] = Math.min(1, Math.max(-1, frames[from + i]));
      }
    }
  }
  return out;
}

export class WanVaeDecoder {
  readonly #graphs = new GraphCache<ChunkGraphs>();
  readonly #denormalized = new GraphCache<ReturnType<typeof channelAffine>>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly config: WanVaeConfig,
    private readonly weights: ModelWeights,
    /** [z_dim] each: 1 / latents_std in f32 (WanPipeline's latents_std) and latents_mean. */
    private readonly latentsStdInv: Tensor,
    private readonly latentsMean: Tensor,
  ) {}

  static async load(ctx: GpuContext, dir: string, config: WanVaeConfig): Promise<WanVaeDecoder> {
    const weights = new ModelWeights(
      await loadWeights(ctx, dir, decoderShapes(config), { ignore: encoderOnly }),
    );
    const z = config.z_dim;
    const stdInv = ctx.pool.upload(Float32Array.from(config.latents_std, (s) => 1 / Math.fround(s)), [z]);
    const mean = ctx.pool.upload(Float32Array.from(config.latents_mean), [z]);
    return new WanVaeDecoder(ctx, config, weights, stdInv, mean);
  }

  get weightBytes(): number {
    return this.weights.bytes;
  }

  /** Video [B, out_channels, frames, H, W] of latents [B, z_dim, F, h, w]. */
  videoShape(latents: readonly number[]): VideoShape {
    const [batch, , frames, height, width] = latents;
    const { spatial, temporal } = wanVaeScale(this.config);
    return [batch, this.config.out_channels, 1 + (frames - 1) * temporal, height * spatial, width * spatial];
  }

  /**
   * WanPipeline's de-normalisation of latents [B, z_dim, F, h, w] (the transformer's space) into what
   * decode() takes: latents / (1 / latents_std) + latents_mean per channel. Built once per shape and kept;
   * `out` is overwritten by the next run of the same shape.
   */
  denormalize(latents: Tensor): { dispatches: Command[]; out: Tensor } {
    this.#checkLatents(latents);
    return this.#denormalized.get(
      latents.shape.join(),
      () => channelAffine(this.ctx, latents, { divisor: this.latentsStdInv, shift: this.latentsMean }),
    );
  }

  /** The chunk graphs of latents [B, z_dim, *, height, width], built on first use and kept. */
  chunkGraphs(batch: number, height: number, width: number): ChunkGraphs {
    return this.#graphs.get(
      [batch, height, width].join(),
      () => buildChunkGraphs(this.ctx, this.weights, this.config, { batch, height, width }),
    );
  }

  /** Copies latent frame `frame` of z [B, z_dim, F, h, w] into the graphs' input [1, B, z_dim, h, w]. */
  frameInput(z: Tensor, frame: number, graphs: ChunkGraphs): Command[] {
    const [batch, channels, frames, height, width] = z.shape;
    const plane = height * width * 4;
    return Array.from(
      { length: batch * channels },
      (_, k) =>
        copyCommand(`latent frame ${frame}`, z, graphs.input, {
          srcOffset: (k * frames + frame) * plane,
          dstOffset: k * plane,
          bytes: plane,
        }),
    );
  }

  /**
   * Decodes z [B, z_dim, F, h, w] (de-normalised, what vae.decode takes; its producers submitted or encoded in
   * `recorder`), handing over each chunk's frames as they come: 1, then 2^(upsample3d levels) per latent frame.
   */
  async decodeFrames(
    z: Tensor,
    onFrames: (frames: VideoFrames) => void | Promise<void>,
    recorder: StepRecorder = new StepRecorder(this.ctx.gpu),
  ): Promise<VideoShape> {
    this.#checkLatents(z);
    const [batch, , frames, height, width] = z.shape;
    const graphs = this.chunkGraphs(batch, height, width);
    await this.ctx.kernels.ready();
    let start = 0;
    for (let i = 0; i < frames; i++) {
      const graph = i === 0 ? graphs.first : graphs.later;
      recorder.encode([
        ...(i === 0 ? graphs.reset : []),
        ...this.frameInput(z, i, graphs),
        ...graph.commands,
      ]);
      const data = await recorder.read(graph.output);
      const [t, b, c, h, w] = graph.output.shape;
      await onFrames({ data: videoLayout(data, graph.output.shape), shape: [b, c, t, h, w], start });
      start += t;
    }
    return this.videoShape(z.shape);
  }

  /** The whole video of z [B, z_dim, F, h, w] (de-normalised), [B, out_channels, frames, H, W] in [-1, 1]. */
  async decode(z: Tensor, recorder?: StepRecorder): Promise<DecodedVideo> {
    const shape = this.videoShape(z.shape);
    const [batch, channels, frames, height, width] = shape;
    const plane = height * width;
    const data = new Float32Array(batch * channels * frames * plane);
    await this.decodeFrames(z, (chunk) => {
      const t = chunk.shape[2];
      for (let k = 0; k < batch * channels; k++) {
        data.set(chunk.data.subarray(k * t * plane, (k + 1) * t * plane), (k * frames + chunk.start) * plane);
      }
    }, recorder);
    return { data, shape };
  }

  /**
   * The pipeline's path: latents as the transformer leaves them, de-normalised on the GPU, then decoded chunk
   * by chunk straight into frames [B x T, out_channels, H, W] (each video's frames in order), in [-1, 1].
   */
  async decodeLatentsToFrames(latents: Tensor, recorder: StepRecorder): Promise<DecodedFrames> {
    const { dispatches, out } = this.denormalize(latents);
    recorder.encode(dispatches);
    const [batch, channels, frames, height, width] = this.videoShape(out.shape);
    const plane = height * width;
    const data = new Float32Array(batch * frames * channels * plane);
    await this.decodeFrames(out, (chunk) => {
      const t = chunk.shape[2];
      for (let b = 0; b < batch; b++) {
        for (let c = 0; c < channels; c++) {
          for (let k = 0; k < t; k++) {
            const from = ((b * channels + c) * t + k) * plane;
            const to = ((b * frames + chunk.start + k) * channels + c) * plane;
            data.set(chunk.data.subarray(from, from + plane), to);
          }
        }
      }
    }, recorder);
    return { data, shape: [batch * frames, channels, height, width] };
  }

  release(): void {
    this.#graphs.release();
    this.#denormalized.release();
    this.weights.release();
    this.latentsStdInv.release();
    this.latentsMean.release();
  }

  #checkLatents(z: Tensor): void {
    if (z.dtype !== "f32" || z.shape.length !== 5 || z.shape[1] !== this.config.z_dim) {
      throw new KernelError(
        "wan_vae",
        `latents ${
          formatShape(z.shape)
        } ${z.dtype} must be f32 [B, z_dim = ${this.config.z_dim}, frames, h, w]`,
      );
    }
  }
}
