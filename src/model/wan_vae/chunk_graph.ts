// The decoder's graph for one chunk (one latent frame) of AutoencoderKLWan._decode, as diffusers computes it:
// post_quant_conv, conv_in, the mid block (residual block, per-frame single-head attention, residual block),
// the up blocks (residual blocks, then upsample2d = nearest x2 + conv, or upsample3d = time_conv doubling the
// frames first, except on the first chunk), RMS norm + SiLU, conv_out. Activations are frame-major
// [T, B, C, H, W]; T is 1 at the latent level and doubles after each upsample3d (the first chunk stays at 1).
// Two graphs serve a whole video: the first chunk's and every later chunk's, sharing one feature cache and one
// activation arena, so a long video needs no more memory than a short one.
import { ActivationArena } from "../../gpu/activation_arena.ts";
import type { GpuContext } from "../../gpu/context.ts";
import type { Command } from "../../gpu/kernel.ts";
import { Owned, type Releasable } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { flashAttention } from "../../ops/attention.ts";
import { axpy } from "../../ops/axpy.ts";
import { channelRmsNorm } from "../../ops/channel_rms_norm.ts";
import { conv2d } from "../../ops/conv2d.ts";
import { causalConv3d } from "../../ops/conv3d.ts";
import { linear } from "../../ops/linear.ts";
import { im2col, unpatchify } from "../../ops/patch.ts";
import type { ModelWeights } from "../model_weights.ts";
import { upBlocks, type WanVaeConfig } from "./config.ts";
import { FeatureCache } from "./feature_cache.ts";

export interface ChunkGraph {
  commands: Command[];
  /** [T, B, out_channels, H, W], frame-major, before the clamp: 1 frame for the first chunk. */
  output: Tensor;
  /**
   * The stages diffusers' fixtures record: `tensor` ([T, B, C, H, W]) holds the stage's output once the first
   * `after` commands have run (later layers reuse its buffer).
   */
  stages: { name: string; tensor: Tensor; after: number }[];
}

type Op = Releasable & { dispatches: Command[] };

/** Builds one chunk's commands; `first`: the first chunk (zero history, no time_conv). */
class ChunkBuilder {
  readonly commands: Command[] = [];
  readonly stages: ChunkGraph["stages"] = [];

  constructor(
    private readonly ctx: GpuContext,
    private readonly weights: ModelWeights,
    private readonly arena: ActivationArena,
    private readonly cache: FeatureCache,
    private readonly owned: Owned,
    private readonly first: boolean,
  ) {}

  stage(name: string, tensor: Tensor): void {
    this.stages.push({ name, tensor, after: this.commands.length });
  }

  #run(op: Op): void {
    this.owned.add(op);
    this.commands.push(...op.dispatches);
  }

  #w(name: string): Tensor {
    return this.weights.get(name);
  }

  /** WanCausalConv3d `name` of x [T, B, C, H, W]; with KT > 1 it reads, then updates, its history. */
  causal(
    name: string,
    x: Tensor,
    o: { padding: number; split?: number; out?: Tensor; accumulate?: boolean },
  ) {
    const w = this.#w(`${name}.weight`);
    const [outChannels, , temporal, kernel] = w.shape;
    const [frames, batch, , height, width] = x.shape;
    const split = o.split ?? 1;
    const edge = 2 * o.padding - kernel + 1;
    const out = o.out ??
      this.arena.take([frames * split, batch, outChannels / split, height + edge, width + edge]);
    const history = temporal > 1 ? this.cache.history(name, x, temporal - 1) : undefined;
    this.#run(causalConv3d(this.ctx, x, w, { ...o, history, bias: this.#w(`${name}.bias`), out }));
    if (history) this.commands.push(...this.cache.update(name, x, this.first));
    return out;
  }

  /** WanRMS_norm `name` (+ SiLU) of x [T, B, C, H, W], into a new activation or in place. */
  norm(name: string, x: Tensor, o: { silu: boolean; inPlace?: boolean }): Tensor {
    const [frames, batch, channels, height, width] = x.shape;
    const images = (t: Tensor) => t.view([frames * batch, channels, height, width]);
    const out = o.inPlace ? x : this.arena.take(x.shape);
    const gamma = this.#w(`${name}.gamma`).view([channels]);
    this.#run(
      channelRmsNorm(this.ctx, images(x), {
        gamma,
        silu: o.silu,
        ...(o.inPlace ? { inPlace: true } : { out: images(out) }),
      }),
    );
    return out;
  }

  /** WanResidualBlock: shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))), in place on x when C is kept. */
  resnet(name: string, x: Tensor): Tensor {
    const shortcut = this.weights.find(`${name}.conv_shortcut.weight`) !== undefined;
    const residual = shortcut ? this.causal(`${name}.conv_shortcut`, x, { padding: 0 }) : x;
    const a = this.norm(`${name}.norm1`, x, { silu: true });
    if (shortcut) this.arena.give(x);
    const b = this.causal(`${name}.conv1`, a, { padding: 1 });
    this.arena.give(a);
    this.norm(`${name}.norm2`, b, { silu: true, inPlace: true });
    this.causal(`${name}.conv2`, b, { padding: 1, out: residual, accumulate: true });
    this.arena.give(b);
    return residual;
  }

  /** WanAttentionBlock: x + proj(attention(to_qkv(norm(x)))), one head over the pixels of each frame. */
  attention(name: string, x: Tensor): Tensor {
    const { ctx, arena } = this;
    const [frames, batch, channels, height, width] = x.shape;
    const [images, pixels] = [frames * batch, height * width];
    const normed = this.norm(`${name}.norm`, x, { silu: false });
    const tokens = arena.take([images, pixels, channels]);
    const geometry = { batch: images, channels, height, width };
    this.#run(
      im2col(ctx, normed, { ...geometry, kernel: 1, stride: 1, padding: 0, layout: "nchw" }, { out: tokens }),
    );
    arena.give(normed);
    const qkv = arena.take([images, pixels, 3 * channels]);
    const matrix = (n: string, rows: number) => this.#w(`${name}.${n}.weight`).view([rows, channels]);
    this.#run(
      linear(ctx, tokens, matrix("to_qkv", 3 * channels), {
        bias: this.#w(`${name}.to_qkv.bias`),
        out: { tensor: qkv },
      }),
    );
    arena.give(tokens);
    const view = (k: number) => ({ tensor: qkv, offset: k * channels, rowStride: 3 * channels });
    const attended = arena.take([images, pixels, channels]);
    this.#run(
      flashAttention(ctx, { q: view(0), k: view(1), v: view(2), tokens: pixels }, {
        batch: images,
        heads: 1,
        headDim: channels,
      }, { out: attended }),
    );
    arena.give(qkv);
    const projected = arena.take([images, pixels, channels]);
    this.#run(
      linear(ctx, attended, matrix("proj", channels), {
        bias: this.#w(`${name}.proj.bias`),
        out: { tensor: projected },
      }),
    );
    arena.give(attended);
    const image = unpatchify(ctx, projected, { ...geometry, patch: 1 });
    this.#run(image);
    arena.give(projected);
    this.#run(axpy(ctx, image.out, x.view(image.out.shape), { alpha: 1, inPlace: true }));
    return x;
  }

  /** WanResample upsample2d / upsample3d: [T, B, C, H, W] -> [T or 2T, B, C / 2, 2H, 2W]. */
  upsample(name: string, x: Tensor, mode: "2d" | "3d"): Tensor {
    if (mode === "3d" && !this.first) {
      const doubled = this.causal(`${name}.time_conv`, x, { padding: 0, split: 2 });
      this.arena.give(x);
      x = doubled;
    }
    const [frames, batch, , height, width] = x.shape;
    const w = this.#w(`${name}.resample.1.weight`);
    const out = this.arena.take([frames, batch, w.shape[0], 2 * height, 2 * width]);
    const images = (t: Tensor) => t.view([frames * batch, ...t.shape.slice(2)]);
    this.#run(
      conv2d(this.ctx, images(x), w, {
        padding: 1,
        upsample: 2,
        bias: this.#w(`${name}.resample.1.bias`),
        out: images(out),
      }),
    );
    this.arena.give(x);
    return out;
  }
}

function buildChunk(builder: ChunkBuilder, config: WanVaeConfig, input: Tensor): ChunkGraph {
  const d = "decoder";
  const latents = builder.causal("post_quant_conv", input, { padding: 0 });
  builder.stage("post_quant_conv", latents);
  let x = builder.causal(`${d}.conv_in`, latents, { padding: 1 });
  builder.stage("conv_in", x);
  x = builder.resnet(`${d}.mid_block.resnets.0`, x);
  x = builder.attention(`${d}.mid_block.attentions.0`, x);
  x = builder.resnet(`${d}.mid_block.resnets.1`, x);
  builder.stage("mid_block", x);
  for (const [i, block] of upBlocks(config).entries()) {
    for (let j = 0; j <= config.num_res_blocks; j++) {
      x = builder.resnet(`${d}.up_blocks.${i}.resnets.${j}`, x);
    }
    if (block.upsample) x = builder.upsample(`${d}.up_blocks.${i}.upsamplers.0`, x, block.upsample);
    builder.stage(`up_blocks.${i}`, x);
  }
  const normed = builder.norm(`${d}.norm_out`, x, { silu: true });
  const output = builder.causal(`${d}.conv_out`, normed, { padding: 1 });
  builder.stage("conv_out", output);
  return { commands: builder.commands, output, stages: builder.stages };
}

/** Everything one latent shape [B, z_dim, *, h, w] decodes with, built once and kept. */
export interface ChunkGraphs {
  /** [1, B, z_dim, h, w]: the chunk's latent frame (frameInput writes it). */
  input: Tensor;
  /** Zeroes the feature cache: run before the first chunk. */
  reset: Command[];
  first: ChunkGraph;
  later: ChunkGraph;
  /** Bytes held: the activation arena with the input, and the feature cache. */
  bytes: { activations: number; featureCache: number };
  release(): void;
}

export function buildChunkGraphs(
  ctx: GpuContext,
  weights: ModelWeights,
  config: WanVaeConfig,
  shape: { batch: number; height: number; width: number },
): ChunkGraphs {
  const owned = new Owned();
  const arena = owned.add(new ActivationArena(ctx.pool));
  const cache = owned.add(new FeatureCache(ctx, arena));
  try {
    const input = owned.add(ctx.pool.tensor([1, shape.batch, config.z_dim, shape.height, shape.width]));
    const build = (first: boolean) => {
      const graph = buildChunk(new ChunkBuilder(ctx, weights, arena, cache, owned, first), config, input);
      arena.giveAll();
      return graph;
    };
    const first = build(true);
    const later = build(false);
    return {
      input,
      reset: cache.reset(),
      first,
      later,
      bytes: { activations: arena.bytes + input.byteLength, featureCache: cache.bytes },
      release: () => owned.release(),
    };
  } catch (e) {
    owned.release();
    throw e;
  }
}
