// diffusers' DiTTransformer2DModel (DiT-XL/2 and any config diffusers accepts), computed as diffusers does:
// PatchEmbed (conv patchify + fixed sin-cos positions), blocks of adaLN-Zero self-attention and a GELU-tanh
// feed-forward, then the final adaLN (proj_out_1 of block 0's conditioning) and proj_out_2, unpatchified to
// [B, out_channels, S, S]. Field names follow the checkpoint keys.
// Every block has its own CombinedTimestepLabelEmbeddings (timestep MLP + class table). Those depend only on
// the timestep and the labels, so all of them run in the prologue: a cache strategy that skips a block
// skips its hidden-stream work only, and the final layer's conditioning (block 0's) is always fresh.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand, disposeDispatches } from "../../gpu/kernel.ts";
import { Owned } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { flashAttention } from "../../ops/attention.ts";
import { embeddingLookup } from "../../ops/embedding_lookup.ts";
import { linear } from "../../ops/linear.ts";
import { silu } from "../../ops/modulate.ts";
import { layerNormModulate } from "../../ops/norm.ts";
import { im2col, unpatchify } from "../../ops/patch.ts";
import { timestepEmbedding } from "../../ops/timestep_embedding.ts";
import { type ClassConditionalGraph, modulatedInputOf } from "../denoiser_graph.ts";
import { GraphCache, ModelWeights } from "../model_weights.ts";
import { loadWeights, type ShapeSpec } from "../weights.ts";
import { ditDims, type DitTransformerConfig } from "./config.ts";
import { sincosPositions } from "./pos_embed.ts";

const FREQUENCIES = 256;
/** AdaLayerNormZero's and norm_out's LayerNorm eps (norm3 uses the config's norm_eps). */
const ADA_EPS = 1e-6;

/** Checkpoint keys and shapes of a config. */
export function ditTransformerShapes(c: DitTransformerConfig): ShapeSpec {
  const { inner: d, outChannels } = ditDims(c);
  const p = c.patch_size;
  const linearShapes = (name: string, out: number, inp: number, bias = true): [string, number[]][] => [
    [`${name}.weight`, [out, inp]],
    ...(bias ? [[`${name}.bias`, [out]] as [string, number[]]] : []),
  ];
  const shapes: [string, number[]][] = [
    ["pos_embed.proj.weight", [d, c.in_channels, p, p]],
    ["pos_embed.proj.bias", [d]],
    ...linearShapes("proj_out_1", 2 * d, d),
    ...linearShapes("proj_out_2", p * p * outChannels, d),
  ];
  for (let i = 0; i < c.num_layers; i++) {
    const b = `transformer_blocks.${i}`;
    shapes.push(
      ...linearShapes(`${b}.norm1.emb.timestep_embedder.linear_1`, d, FREQUENCIES),
      ...linearShapes(`${b}.norm1.emb.timestep_embedder.linear_2`, d, d),
      [`${b}.norm1.emb.class_embedder.embedding_table.weight`, [c.num_embeds_ada_norm + 1, d]],
      ...linearShapes(`${b}.norm1.linear`, 6 * d, d),
      ...["to_q", "to_k", "to_v"].flatMap((n) => linearShapes(`${b}.attn1.${n}`, d, d, c.attention_bias)),
      ...linearShapes(`${b}.attn1.to_out.0`, d, d),
      ...(c.norm_elementwise_affine
        ? [[`${b}.norm3.weight`, [d]], [`${b}.norm3.bias`, [d]]] as [string, number[]][]
        : []),
      ...linearShapes(`${b}.ff.net.0.proj`, 4 * d, d),
      ...linearShapes(`${b}.ff.net.2`, d, 4 * d),
    );
  }
  return new Map(shapes);
}

export class DitTransformer {
  readonly #graphs = new GraphCache<ClassConditionalGraph>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly config: DitTransformerConfig,
    private readonly weights: ModelWeights,
    private readonly positions: Tensor,
  ) {}

  static async load(ctx: GpuContext, dir: string, config: DitTransformerConfig): Promise<DitTransformer> {
    const weights = new ModelWeights(await loadWeights(ctx, dir, ditTransformerShapes(config)));
    const { inner, grid } = ditDims(config);
    const positions = ctx.pool.upload(sincosPositions(inner, grid, grid), [grid * grid, inner]);
    return new DitTransformer(ctx, config, weights, positions);
  }

  get depth(): number {
    return this.config.num_layers;
  }

  /** Bytes of GPU memory the weights hold, in their stored dtypes. */
  get weightBytes(): number {
    return this.weights.bytes;
  }

  /** Approximate FLOPs of one forward per sample (matmuls and attention), for reports. */
  get flopsPerSample(): number {
    const { inner: d, outChannels, tokens: n } = ditDims(this.config);
    const pp = this.config.patch_size ** 2;
    const conditioning = 2 * (FREQUENCIES * d + d * d + 6 * d * d);
    const block = conditioning + 2 * (4 * n * d * d + 2 * n * n * d + 8 * n * d * d);
    return this.config.num_layers * block + 2 * n * d * pp * (this.config.in_channels + outChannels) +
      2 * 2 * d * d;
  }

  graph(batch: number): ClassConditionalGraph {
    return this.#graphs.get(batch, () => this.#build(batch));
  }

  release(): void {
    this.#graphs.release();
    this.weights.release();
    this.positions.release();
  }

  #w(name: string): Tensor {
    return this.weights.get(name);
  }

  #build(batch: number): ClassConditionalGraph {
    const { ctx, config: c } = this;
    const { inner, tokens } = ditDims(c);
    const owned = new Owned();
    const size = c.sample_size;
    const x = owned.add(ctx.pool.tensor([batch, c.in_channels, size, size]));
    const t = owned.add(ctx.pool.tensor([batch]));
    const labels = owned.add(ctx.pool.tensor([batch], "u32"));
    const hidden = owned.add(ctx.pool.tensor([batch, tokens, inner]));
    try {
      const prologue = this.#patchEmbed(owned, x, hidden);
      const frequencies = owned.add(timestepEmbedding(ctx, t, {
        dim: FREQUENCIES,
        flipSinToCos: true,
        downscaleFreqShift: 1,
        scale: 1,
        maxPeriod: 10000,
      }));
      prologue.push(...frequencies.dispatches);
      const conditioning = Array.from({ length: c.num_layers }, (_, i) => {
        const { commands, cond, mod } = this.#conditioning(owned, i, frequencies.out, labels);
        prologue.push(...commands);
        return { cond, mod };
      });
      const built = conditioning.map(({ mod }, i) => this.#block(owned, i, hidden, mod));
      const blocks = built.map((b) => b.commands);
      const { epilogue, output, normOut } = this.#finalLayer(owned, hidden, conditioning[0].cond);
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
        output,
        stages: { norm_out: normOut },
        release: () => owned.release(),
      };
    } catch (e) {
      owned.release();
      throw e;
    }
  }

  /** hidden = positions + patches W^T + b (the conv with stride p as im2col + linear). */
  #patchEmbed(owned: Owned, x: Tensor, hidden: Tensor): Command[] {
    const { ctx, config: c } = this;
    const [batch] = x.shape;
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
    const positions = Array.from(
      { length: batch },
      (_, b) =>
        copyCommand("pos_embed", this.positions, hidden, { dstOffset: b * this.positions.byteLength }),
    );
    const embed = owned.add(
      linear(
        ctx,
        patches.out,
        this.#w("pos_embed.proj.weight").view([hidden.shape[2], c.in_channels * p * p]),
        {
          bias: this.#w("pos_embed.proj.bias"),
          out: { tensor: hidden },
          accumulate: true,
        },
      ),
    );
    return [...patches.dispatches, ...positions, ...embed.dispatches];
  }

  /** Block i's conditioning: cond = linear_2(SiLU(linear_1(freq))) + table[label]; mod = linear(SiLU(cond)). */
  #conditioning(owned: Owned, i: number, frequencies: Tensor, labels: Tensor) {
    const { ctx } = this;
    const w = (name: string) => this.#w(`transformer_blocks.${i}.norm1.${name}`);
    const [batch] = frequencies.shape;
    const inner = ditDims(this.config).inner;
    const hiddenT = owned.add(linear(ctx, frequencies, w("emb.timestep_embedder.linear_1.weight"), {
      bias: w("emb.timestep_embedder.linear_1.bias"),
      activation: "silu",
    }));
    const cond = owned.add(ctx.pool.tensor([batch, inner]));
    const classEmbed = embeddingLookup(ctx, w("emb.class_embedder.embedding_table.weight"), labels, cond, {
      accumulate: false,
    });
    owned.add({ release: () => disposeDispatches([classEmbed]) });
    const tEmbed = owned.add(linear(ctx, hiddenT.out, w("emb.timestep_embedder.linear_2.weight"), {
      bias: w("emb.timestep_embedder.linear_2.bias"),
      out: { tensor: cond },
      accumulate: true,
    }));
    const activated = owned.add(silu(ctx, cond));
    const mod = owned.add(linear(ctx, activated.out, w("linear.weight"), { bias: w("linear.bias") }));
    const commands = [
      ...hiddenT.dispatches,
      classEmbed,
      ...tEmbed.dispatches,
      ...activated.dispatches,
      ...mod.dispatches,
    ];
    return { commands, cond, mod: mod.out };
  }

  /** x += gate_msa * attn(modulate(LN(x))); x += gate_mlp * ff(modulate(norm3(x))), in place on hidden. */
  #block(owned: Owned, i: number, hidden: Tensor, mod: Tensor) {
    const { ctx, config: c } = this;
    const w = (name: string) => this.#w(`transformer_blocks.${i}.${name}`);
    const maybe = (name: string) => this.weights.find(`transformer_blocks.${i}.${name}`);
    const [batch, tokens, d] = hidden.shape;
    // mod [batch, 6d] chunks: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
    const gate = (chunk: number) => ({ tensor: mod, offset: chunk * d, stride: 6 * d, rowsPerGate: tokens });
    const norm1 = owned.add(layerNormModulate(ctx, hidden, mod, { shift: 0, scale: 1, eps: ADA_EPS }));
    const qkv = owned.add(ctx.pool.tensor([batch, tokens, 3 * d]));
    const projections = ["to_q", "to_k", "to_v"].map((name, k) =>
      owned.add(linear(ctx, norm1.out, w(`attn1.${name}.weight`), {
        bias: maybe(`attn1.${name}.bias`),
        out: { tensor: qkv, offset: k * d, rowStride: 3 * d },
      }))
    );
    const view = (k: number) => ({ tensor: qkv, offset: k * d, rowStride: 3 * d });
    const heads = c.num_attention_heads;
    const attention = owned.add(
      flashAttention(ctx, { q: view(0), k: view(1), v: view(2), tokens }, {
        batch,
        heads,
        headDim: d / heads,
      }),
    );
    const out = owned.add(linear(ctx, attention.out, w("attn1.to_out.0.weight"), {
      bias: w("attn1.to_out.0.bias"),
      out: { tensor: hidden },
      gate: gate(2),
    }));
    const norm3 = owned.add(layerNormModulate(ctx, hidden, mod, {
      shift: 3,
      scale: 4,
      eps: c.norm_eps,
      weight: maybe("norm3.weight"),
      bias: maybe("norm3.bias"),
    }));
    const ff1 = owned.add(linear(ctx, norm3.out, w("ff.net.0.proj.weight"), {
      bias: w("ff.net.0.proj.bias"),
      activation: "gelu_tanh",
    }));
    const ff2 = owned.add(linear(ctx, ff1.out, w("ff.net.2.weight"), {
      bias: w("ff.net.2.bias"),
      out: { tensor: hidden },
      gate: gate(5),
    }));
    const ops = [norm1, ...projections, attention, out, norm3, ff1, ff2];
    return { commands: ops.flatMap((op): Command[] => op.dispatches), norm1 };
  }

  /** shift, scale = proj_out_1(SiLU(cond_0)); LN(x) * (1 + scale) + shift; proj_out_2; unpatchify. */
  #finalLayer(owned: Owned, hidden: Tensor, cond: Tensor) {
    const { ctx, config: c } = this;
    const activated = owned.add(silu(ctx, cond));
    const mod = owned.add(linear(ctx, activated.out, this.#w("proj_out_1.weight"), {
      bias: this.#w("proj_out_1.bias"),
    }));
    const norm = owned.add(layerNormModulate(ctx, hidden, mod.out, { shift: 0, scale: 1, eps: ADA_EPS }));
    const pixels = owned.add(linear(ctx, norm.out, this.#w("proj_out_2.weight"), {
      bias: this.#w("proj_out_2.bias"),
    }));
    const image = owned.add(unpatchify(ctx, pixels.out, {
      batch: hidden.shape[0],
      channels: ditDims(c).outChannels,
      height: c.sample_size,
      width: c.sample_size,
      patch: c.patch_size,
      order: "channels_last",
    }));
    return {
      epilogue: [
        ...activated.dispatches,
        ...mod.dispatches,
        ...norm.dispatches,
        ...pixels.dispatches,
        ...image.dispatches,
      ],
      output: image.out,
      /** The final LayerNorm's modulated output, before proj_out_2 (a fixture stage). */
      normOut: norm.out,
    };
  }
}
