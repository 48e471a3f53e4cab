// Class-conditional DiT (facebookresearch DiT layout with adaLN-Zero, plus FLUX/SD3-style RMSNorm on q and
// k), the architecture of tools/train_mnist_dit.py. Field names follow the checkpoint keys.
//
// A model is built once per batch size into a `DitGraph`: every tensor and dispatch of one forward pass,
// allocated up front, so a denoising step only encodes commands. The graph exposes the transformer as
// prologue -> blocks[0..L) -> epilogue, each block updating `hidden` in place: that block list is what
// cache strategies wrap, without the model knowing which strategy runs it.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand } from "../../gpu/kernel.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { flashAttention } from "../../ops/attention.ts";
import { embeddingLookup } from "../../ops/embedding_lookup.ts";
import { linear } from "../../ops/linear.ts";
import { silu } from "../../ops/modulate.ts";
import { layerNormModulate, rmsNormInPlace } from "../../ops/norm.ts";
import { im2col, unpatchify } from "../../ops/patch.ts";
import { timestepEmbedding } from "../../ops/timestep_embedding.ts";
import { type DitConfig, readConfig } from "./config.ts";
import { GraphCache, ModelWeights } from "../model_weights.ts";
import { loadWeights, type ShapeSpec } from "../weights.ts";
import { type ClassConditionalGraph, modulatedInputOf } from "../denoiser_graph.ts";
import { Owned } from "../../gpu/owned.ts";

const TIMESTEP_FREQUENCIES = 256;

/** Checkpoint keys and shapes of a config, in the order of tools/train_mnist_dit.py. */
export function ditShapes(c: DitConfig): ShapeSpec {
  const h = c.hidden_size;
  const p = c.patch_size;
  const tokens = (c.sample_size / p) ** 2;
  const mlp = Math.round(h * c.mlp_ratio);
  const headDim = h / c.num_heads;
  const shapes: [string, number[]][] = [
    ["x_embedder.proj.weight", [h, c.in_channels, p, p]],
    ["x_embedder.proj.bias", [h]],
    ["pos_embed", [1, tokens, h]],
    ["t_embedder.mlp.0.weight", [h, TIMESTEP_FREQUENCIES]],
    ["t_embedder.mlp.0.bias", [h]],
    ["t_embedder.mlp.2.weight", [h, h]],
    ["t_embedder.mlp.2.bias", [h]],
    ["y_embedder.embedding_table.weight", [c.num_classes + 1, h]],
  ];
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}`;
    shapes.push(
      [`${b}.adaLN_modulation.1.weight`, [6 * h, h]],
      [`${b}.adaLN_modulation.1.bias`, [6 * h]],
      [`${b}.attn.qkv.weight`, [3 * h, h]],
      [`${b}.attn.qkv.bias`, [3 * h]],
      [`${b}.attn.q_norm.weight`, [headDim]],
      [`${b}.attn.k_norm.weight`, [headDim]],
      [`${b}.attn.proj.weight`, [h, h]],
      [`${b}.attn.proj.bias`, [h]],
      [`${b}.mlp.fc1.weight`, [mlp, h]],
      [`${b}.mlp.fc1.bias`, [mlp]],
      [`${b}.mlp.fc2.weight`, [h, mlp]],
      [`${b}.mlp.fc2.bias`, [h]],
    );
  }
  shapes.push(
    ["final_layer.adaLN_modulation.1.weight", [2 * h, h]],
    ["final_layer.adaLN_modulation.1.bias", [2 * h]],
    ["final_layer.linear.weight", [p * p * c.out_channels, h]],
    ["final_layer.linear.bias", [p * p * c.out_channels]],
  );
  return new Map(shapes);
}

/** The embedded model's graph; its output is the predicted velocity. */
export type DitGraph = ClassConditionalGraph;

export class Dit {
  readonly #graphs = new GraphCache<DitGraph>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly config: DitConfig,
    private readonly weights: ModelWeights,
  ) {}

  static async load(ctx: GpuContext, dir: string): Promise<Dit> {
    const config = await readConfig(`${dir}/config.json`);
    return new Dit(ctx, config, new ModelWeights(await loadWeights(ctx, dir, ditShapes(config))));
  }

  /** Bytes of GPU memory the weights hold, in their stored dtypes. */
  get weightBytes(): number {
    return this.weights.bytes;
  }

  get depth(): number {
    return this.config.depth;
  }

  get tokens(): number {
    return (this.config.sample_size / this.config.patch_size) ** 2;
  }

  /** Approximate FLOPs of one forward pass per sample (matmuls and attention only), for reports. */
  get flopsPerSample(): number {
    const c = this.config;
    const [n, h, m, pp] = [
      this.tokens,
      c.hidden_size,
      Math.round(c.hidden_size * c.mlp_ratio),
      c.patch_size ** 2,
    ];
    const block = 2 * (h * 6 * h + n * h * 3 * h + 2 * n * n * h + n * h * h + 2 * n * h * m);
    return 2 *
        (n * h * pp * c.in_channels + TIMESTEP_FREQUENCIES * h + h * h + 2 * h * h +
          n * h * pp * c.out_channels) +
      c.depth * block;
  }

  /** The graph for `batch` samples, built on first use and kept: later requests of that size allocate nothing. */
  graph(batch: number): DitGraph {
    return this.#graphs.get(batch, () => this.build(batch));
  }

  release(): void {
    this.#graphs.release();
    this.weights.release();
  }

  #w(name: string): Tensor {
    return this.weights.get(name);
  }

  build(batch: number): DitGraph {
    const { ctx, config: c } = this;
    const owned = new Owned();
    const size = c.sample_size;
    const x = owned.add(ctx.pool.tensor([batch, c.in_channels, size, size]));
    const t = owned.add(ctx.pool.tensor([batch]));
    const labels = owned.add(ctx.pool.tensor([batch], "u32"));
    const hidden = owned.add(ctx.pool.tensor([batch, this.tokens, c.hidden_size]));
    try {
      const { prologue, conditioning } = this.#prologue(owned, x, t, labels, hidden);
      const built = Array.from({ length: c.depth }, (_, i) => this.#block(owned, i, hidden, conditioning));
      const blocks = built.map((b) => b.commands);
      const { epilogue, velocity } = this.#epilogue(owned, hidden, conditioning);
      return {
        batch,
        x,
        t,
        labels,
        hidden,
        prologue,
        blocks,
        modulatedInput: modulatedInputOf(blocks[0], built[0].norm1),
        epilogue,
        output: velocity,
        release: () => owned.release(),
      };
    } catch (e) {
      owned.release();
      throw e;
    }
  }

  /** Patch embedding + fixed positions into `hidden`; conditioning SiLU(t_emb + y_emb) [batch, hidden]. */
  #prologue(owned: Owned, x: Tensor, t: Tensor, labels: Tensor, hidden: Tensor) {
    const { ctx, config: c } = this;
    const batch = x.shape[0];
    const p = c.patch_size;
    const patches = owned.add(im2col(ctx, x, {
      batch,
      channels: c.in_channels,
      height: c.sample_size,
      width: c.sample_size,
      kernel: p,
      stride: p,
      padding: 0,
      layout: "nchw",
    }));
    const posEmbed = this.#w("pos_embed");
    // Every sample starts from the same position table; the patch projection is then added on top.
    const positions = Array.from(
      { length: batch },
      (_, b) => copyCommand("pos_embed", posEmbed, hidden, { dstOffset: b * posEmbed.byteLength }),
    );
    const embed = owned.add(
      linear(
        ctx,
        patches.out,
        this.#w("x_embedder.proj.weight").view([c.hidden_size, c.in_channels * p * p]),
        {
          bias: this.#w("x_embedder.proj.bias"),
          out: { tensor: hidden },
          accumulate: true,
        },
      ),
    );
    const frequencies = owned.add(timestepEmbedding(ctx, t, {
      dim: TIMESTEP_FREQUENCIES,
      flipSinToCos: true,
      downscaleFreqShift: 0,
      scale: c.timestep_scale,
      maxPeriod: 10000,
    }));
    const tHidden = owned.add(linear(ctx, frequencies.out, this.#w("t_embedder.mlp.0.weight"), {
      bias: this.#w("t_embedder.mlp.0.bias"),
      activation: "silu",
    }));
    const cond = owned.add(ctx.pool.tensor([batch, c.hidden_size]));
    const classEmbed = embeddingLookup(ctx, this.#w("y_embedder.embedding_table.weight"), labels, cond, {
      accumulate: false,
    });
    owned.add({ release: () => classEmbed.uniform?.destroy() });
    const tEmbed = owned.add(linear(ctx, tHidden.out, this.#w("t_embedder.mlp.2.weight"), {
      bias: this.#w("t_embedder.mlp.2.bias"),
      out: { tensor: cond },
      accumulate: true,
    }));
    const conditioning = owned.add(silu(ctx, cond));
    const prologue: Command[] = [
      ...patches.dispatches,
      ...positions,
      ...embed.dispatches,
      ...frequencies.dispatches,
      ...tHidden.dispatches,
      classEmbed,
      ...tEmbed.dispatches,
      ...conditioning.dispatches,
    ];
    return { prologue, conditioning: conditioning.out };
  }

  /** x += gate_msa * attn(modulate(LN(x))); x += gate_mlp * mlp(modulate(LN(x))), all in place on hidden. */
  #block(owned: Owned, i: number, hidden: Tensor, conditioning: Tensor) {
    const { ctx, config: c } = this;
    const w = (name: string) => this.#w(`blocks.${i}.${name}`);
    const [batch, tokens, h] = hidden.shape;
    const heads = c.num_heads;
    const headDim = h / heads;
    const mod = owned.add(
      linear(ctx, conditioning, w("adaLN_modulation.1.weight"), { bias: w("adaLN_modulation.1.bias") }),
    );
    // mod [batch, 6h] chunks: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
    const gate = (chunk: number) => ({
      tensor: mod.out,
      offset: chunk * h,
      stride: 6 * h,
      rowsPerGate: tokens,
    });
    const norm1 = owned.add(layerNormModulate(ctx, hidden, mod.out, { shift: 0, scale: 1, eps: c.norm_eps }));
    const qkv = owned.add(linear(ctx, norm1.out, w("attn.qkv.weight"), { bias: w("attn.qkv.bias") }));
    const view = (chunk: number) => ({ tensor: qkv.out, offset: chunk * h, rowStride: 3 * h });
    const rows = { tokens: batch * tokens, heads, headDim };
    const qNorm = owned.add(
      rmsNormInPlace(ctx, view(0), rows, { weight: w("attn.q_norm.weight"), eps: c.norm_eps }),
    );
    const kNorm = owned.add(
      rmsNormInPlace(ctx, view(1), rows, { weight: w("attn.k_norm.weight"), eps: c.norm_eps }),
    );
    const attention = owned.add(
      flashAttention(ctx, { q: view(0), k: view(1), v: view(2), tokens }, { batch, heads, headDim }),
    );
    const proj = owned.add(linear(ctx, attention.out, w("attn.proj.weight"), {
      bias: w("attn.proj.bias"),
      out: { tensor: hidden },
      gate: gate(2),
    }));
    const norm2 = owned.add(layerNormModulate(ctx, hidden, mod.out, { shift: 3, scale: 4, eps: c.norm_eps }));
    const fc1 = owned.add(
      linear(ctx, norm2.out, w("mlp.fc1.weight"), { bias: w("mlp.fc1.bias"), activation: "gelu_tanh" }),
    );
    const fc2 = owned.add(linear(ctx, fc1.out, w("mlp.fc2.weight"), {
      bias: w("mlp.fc2.bias"),
      out: { tensor: hidden },
      gate: gate(5),
    }));
    const ops = [mod, norm1, qkv, qNorm, kNorm, attention, proj, norm2, fc1, fc2];
    return { commands: ops.flatMap((op): Command[] => op.dispatches), norm1 };
  }

  /** Final adaLN, projection to patch pixels, unpatchify to the velocity image. */
  #epilogue(owned: Owned, hidden: Tensor, conditioning: Tensor) {
    const { ctx, config: c } = this;
    const mod = owned.add(linear(ctx, conditioning, this.#w("final_layer.adaLN_modulation.1.weight"), {
      bias: this.#w("final_layer.adaLN_modulation.1.bias"),
    }));
    const norm = owned.add(layerNormModulate(ctx, hidden, mod.out, { shift: 0, scale: 1, eps: c.norm_eps }));
    const pixels = owned.add(linear(ctx, norm.out, this.#w("final_layer.linear.weight"), {
      bias: this.#w("final_layer.linear.bias"),
    }));
    const image = owned.add(unpatchify(ctx, pixels.out, {
      batch: hidden.shape[0],
      channels: c.out_channels,
      height: c.sample_size,
      width: c.sample_size,
      patch: c.patch_size,
    }));
    return {
      epilogue: [...mod.dispatches, ...norm.dispatches, ...pixels.dispatches, ...image.dispatches],
      velocity: image.out,
    };
  }
}
