// The decoder of diffusers' AutoencoderKL, computed as diffusers does: post_quant_conv (when the config has
// it), conv_in, a mid block (ResnetBlock2D, single-head attention over every pixel, ResnetBlock2D), up blocks
// of ResnetBlock2D with nearest x2 upsampling + conv between them, GroupNorm + SiLU, conv_out. Field names
// follow the checkpoint keys; the encoder's tensors are ignored. A graph is built once per latent shape;
// ResnetBlock2D adds its output onto its input in place where the channel count stays.
import type { GpuContext } from "../../gpu/context.ts";
import type { Command } from "../../gpu/kernel.ts";
import { Owned } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { flashAttention } from "../../ops/attention.ts";
import { axpy } from "../../ops/axpy.ts";
import { conv2d } from "../../ops/conv2d.ts";
import { groupNorm } from "../../ops/group_norm.ts";
import { linear } from "../../ops/linear.ts";
import { im2col, unpatchify } from "../../ops/patch.ts";
import { GraphCache, ModelWeights } from "../model_weights.ts";
import { loadWeights, type ShapeSpec } from "../weights.ts";
import type { AutoencoderKlConfig } from "./config.ts";

/** ResnetBlock2D's and the attention's GroupNorm eps in the VAE. */
const EPS = 1e-6;

export interface DecoderGraph {
  /** Input latents [B, latent_channels, h, w] (already divided by scaling_factor, as vae.decode takes them). */
  z: Tensor;
  commands: Command[];
  /** [B, out_channels, h * scale, w * scale], about [-1, 1]. */
  output: Tensor;
  /**
   * The stages diffusers' fixtures record, by module name: `tensor` holds the stage's output once the first
   * `after` commands have run (later in-place layers overwrite it).
   */
  stages: { name: string; tensor: Tensor; after: number }[];
  release(): void;
}

type Shapes = [string, number[]][];

function conv(name: string, out: number, inp: number, k: number): Shapes {
  return [[`${name}.weight`, [out, inp, k, k]], [`${name}.bias`, [out]]];
}

function norm(name: string, channels: number): Shapes {
  return [[`${name}.weight`, [channels]], [`${name}.bias`, [channels]]];
}

function resnet(name: string, inp: number, out: number): Shapes {
  return [
    ...norm(`${name}.norm1`, inp),
    ...conv(`${name}.conv1`, out, inp, 3),
    ...norm(`${name}.norm2`, out),
    ...conv(`${name}.conv2`, out, out, 3),
    ...(inp !== out ? conv(`${name}.conv_shortcut`, out, inp, 1) : []),
  ];
}

/** Up block i: its resnets' input and output channels and whether it upsamples. */
function upBlocks(c: AutoencoderKlConfig) {
  const reversed = [...c.block_out_channels].reverse();
  return reversed.map((out, i) => ({
    channels: Array.from(
      { length: c.layers_per_block + 1 },
      (_, j) => [j === 0 ? reversed[Math.max(0, i - 1)] : out, out],
    ),
    upsample: i < reversed.length - 1,
  }));
}

export function decoderShapes(c: AutoencoderKlConfig): ShapeSpec {
  const top = c.block_out_channels[c.block_out_channels.length - 1];
  const L = c.latent_channels;
  const d = "decoder";
  const shapes: Shapes = [
    ...(c.use_post_quant_conv ? conv("post_quant_conv", L, L, 1) : []),
    ...conv(`${d}.conv_in`, top, L, 3),
    ...resnet(`${d}.mid_block.resnets.0`, top, top),
    ...(c.mid_block_add_attention
      ? [
        ...norm(`${d}.mid_block.attentions.0.group_norm`, top),
        ...["to_q", "to_k", "to_v", "to_out.0"].flatMap((n): Shapes => [
          [`${d}.mid_block.attentions.0.${n}.weight`, [top, top]],
          [`${d}.mid_block.attentions.0.${n}.bias`, [top]],
        ]),
      ]
      : []),
    ...resnet(`${d}.mid_block.resnets.1`, top, top),
  ];
  for (const [i, block] of upBlocks(c).entries()) {
    for (const [j, [inp, out]] of block.channels.entries()) {
      shapes.push(...resnet(`${d}.up_blocks.${i}.resnets.${j}`, inp, out));
    }
    if (block.upsample) {
      const out = block.channels[0][1];
      shapes.push(...conv(`${d}.up_blocks.${i}.upsamplers.0.conv`, out, out, 3));
    }
  }
  shapes.push(
    ...norm(`${d}.conv_norm_out`, c.block_out_channels[0]),
    ...conv(`${d}.conv_out`, c.out_channels, c.block_out_channels[0], 3),
  );
  return new Map(shapes);
}

/** Tensors the decoder does not use: the encoder and its quant_conv. */
const encoderOnly = (name: string) => name.startsWith("encoder.") || name.startsWith("quant_conv.");

export class AutoencoderKlDecoder {
  readonly #graphs = new GraphCache<DecoderGraph>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly config: AutoencoderKlConfig,
    private readonly weights: ModelWeights,
  ) {}

  static async load(
    ctx: GpuContext,
    dir: string,
    config: AutoencoderKlConfig,
  ): Promise<AutoencoderKlDecoder> {
    const weights = await loadWeights(ctx, dir, decoderShapes(config), { ignore: encoderOnly });
    return new AutoencoderKlDecoder(ctx, config, new ModelWeights(weights));
  }

  get weightBytes(): number {
    return this.weights.bytes;
  }

  /** The graph for latents of `shape` [B, latent_channels, h, w], built on first use and kept. */
  graph(shape: readonly [number, number, number, number]): DecoderGraph {
    return this.#graphs.get(shape.join(), () => this.#build(shape));
  }

  release(): void {
    this.#graphs.release();
    this.weights.release();
  }

  #w(name: string): Tensor {
    return this.weights.get(name);
  }

  #build(shape: readonly [number, number, number, number]): DecoderGraph {
    const { ctx, config: c } = this;
    const owned = new Owned();
    const commands: Command[] = [];
    const stages: DecoderGraph["stages"] = [];
    const stage = (
      name: string,
      tensor: Tensor,
    ) => (stages.push({ name, tensor, after: commands.length }), tensor);
    const run = <T extends { dispatches: Command[]; out: Tensor; release(): void }>(op: T): Tensor => {
      owned.add(op);
      commands.push(...op.dispatches);
      return op.out;
    };
    const convolve = (
      name: string,
      x: Tensor,
      options: { padding: number; upsample?: number; out?: Tensor; accumulate?: boolean },
    ) => run(conv2d(ctx, x, this.#w(`${name}.weight`), { ...options, bias: this.#w(`${name}.bias`) }));
    try {
      const z = owned.add(ctx.pool.tensor([...shape]));
      let x = z;
      if (c.use_post_quant_conv) x = stage("post_quant_conv", convolve("post_quant_conv", x, { padding: 0 }));
      x = stage("conv_in", convolve("decoder.conv_in", x, { padding: 1 }));
      x = this.#resnet(run, convolve, "decoder.mid_block.resnets.0", x);
      if (c.mid_block_add_attention) x = this.#attention(run, "decoder.mid_block.attentions.0", x);
      x = stage("mid_block", this.#resnet(run, convolve, "decoder.mid_block.resnets.1", x));
      for (const [i, block] of upBlocks(c).entries()) {
        for (const j of block.channels.keys()) {
          x = this.#resnet(run, convolve, `decoder.up_blocks.${i}.resnets.${j}`, x);
        }
        if (block.upsample) {
          x = convolve(`decoder.up_blocks.${i}.upsamplers.0.conv`, x, { padding: 1, upsample: 2 });
        }
        stage(`up_blocks.${i}`, x);
      }
      const normed = run(groupNorm(ctx, x, this.#groupNorm("decoder.conv_norm_out", true)));
      const output = convolve("decoder.conv_out", normed, { padding: 1 });
      return { z, commands, output, stages, release: () => owned.release() };
    } catch (e) {
      owned.release();
      throw e;
    }
  }

  #groupNorm(name: string, silu: boolean) {
    return {
      groups: this.config.norm_num_groups,
      eps: EPS,
      weight: this.#w(`${name}.weight`),
      bias: this.#w(`${name}.bias`),
      silu,
    };
  }

  /** ResnetBlock2D: out = shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))); in place on x when C is kept. */
  #resnet(
    run: (op: { dispatches: Command[]; out: Tensor; release(): void }) => Tensor,
    convolve: (name: string, x: Tensor, o: { padding: number; out?: Tensor; accumulate?: boolean }) => Tensor,
    name: string,
    x: Tensor,
  ): Tensor {
    const { ctx } = this;
    const h1 = run(groupNorm(ctx, x, this.#groupNorm(`${name}.norm1`, true)));
    const h2 = convolve(`${name}.conv1`, h1, { padding: 1 });
    run(groupNorm(ctx, h2, { ...this.#groupNorm(`${name}.norm2`, true), inPlace: true }));
    const residual = this.weights.find(`${name}.conv_shortcut.weight`)
      ? convolve(`${name}.conv_shortcut`, x, { padding: 0 })
      : x;
    return convolve(`${name}.conv2`, h2, { padding: 1, out: residual, accumulate: true });
  }

  /** x + to_out(attention(to_q, to_k, to_v of GroupNorm(x) as pixel tokens)), one head over all channels. */
  #attention(
    run: (op: { dispatches: Command[]; out: Tensor; release(): void }) => Tensor,
    name: string,
    x: Tensor,
  ): Tensor {
    const { ctx } = this;
    const [batch, channels, height, width] = x.shape;
    const w = (n: string) => this.#w(`${name}.${n}`);
    const normed = run(groupNorm(ctx, x, this.#groupNorm(`${name}.group_norm`, false)));
    const tokens = run(
      im2col(ctx, normed, {
        batch,
        channels,
        height,
        width,
        kernel: 1,
        stride: 1,
        padding: 0,
        layout: "nchw",
      }),
    );
    const pixels = height * width;
    const qkv = ctx.pool.tensor([batch, pixels, 3 * channels]);
    const projected = ["to_q", "to_k", "to_v"].map((n, k) =>
      linear(ctx, tokens, w(`${n}.weight`), {
        bias: w(`${n}.bias`),
        out: { tensor: qkv, offset: k * channels, rowStride: 3 * channels },
      })
    );
    run({
      dispatches: projected.flatMap((p) => p.dispatches),
      out: qkv,
      release: () => (projected.forEach((p) => p.release()), qkv.release()),
    });
    const view = (k: number) => ({ tensor: qkv, offset: k * channels, rowStride: 3 * channels });
    const attended = run(
      flashAttention(ctx, { q: view(0), k: view(1), v: view(2), tokens: pixels }, {
        batch,
        heads: 1,
        headDim: channels,
      }),
    );
    const projectedOut = run(linear(ctx, attended, w("to_out.0.weight"), { bias: w("to_out.0.bias") }));
    const image = run(unpatchify(ctx, projectedOut, { batch, channels, height, width, patch: 1 }));
    run(axpy(ctx, image, x, { alpha: 1, inPlace: true }));
    return x;
  }
}
