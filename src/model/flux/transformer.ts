// diffusers' FluxTransformer2DModel (FLUX.1 dev and schnell), computed as diffusers does: x_embedder over the
// packed latents, context_embedder over the text embeddings, temb = timestep (+ guidance, dev) + pooled-text
// embeddings, the double- and single-stream blocks (src/model/flux/blocks.ts) with RoPE over (t, h, w) ids,
// then norm_out (AdaLayerNormContinuous: scale before shift) and proj_out. Every modulation depends on temb
// only, so all of them run in the prologue; the blocks touch the two token streams only.
import type { GpuContext } from "../../gpu/context.ts";
import type { Command } from "../../gpu/kernel.ts";
import { Owned } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { linear } from "../../ops/linear.ts";
import { silu } from "../../ops/modulate.ts";
import { layerNormModulate } from "../../ops/norm.ts";
import { ropeTable } from "../../ops/rope.ts";
import { timestepEmbedding } from "../../ops/timestep_embedding.ts";
import { type DenoiserGraph, modulatedInputOf } from "../denoiser_graph.ts";
import { GraphCache, ModelWeights } from "../model_weights.ts";
import { loadWeights, type ShapeSpec } from "../weights.ts";
import { FLUX_EPS, FluxBlockBuilder, type FluxShape } from "./blocks.ts";
import { fluxDims, type FluxTransformerConfig } from "./config.ts";

const FREQUENCIES = 256;

type Shapes = [string, number[]][];

const linearShapes = (name: string, out: number, inp: number): Shapes => [
  [`${name}.weight`, [out, inp]],
  [`${name}.bias`, [out]],
];

export function fluxTransformerShapes(c: FluxTransformerConfig): ShapeSpec {
  const { inner: d } = fluxDims(c);
  const h = c.attention_head_dim;
  const embedder = (name: string, inp: number) => [
    ...linearShapes(`${name}.linear_1`, d, inp),
    ...linearShapes(`${name}.linear_2`, d, d),
  ];
  const shapes: Shapes = [
    ...linearShapes("x_embedder", d, c.in_channels),
    ...linearShapes("context_embedder", d, c.joint_attention_dim),
    ...embedder("time_text_embed.timestep_embedder", FREQUENCIES),
    ...(c.guidance_embeds ? embedder("time_text_embed.guidance_embedder", FREQUENCIES) : []),
    ...embedder("time_text_embed.text_embedder", c.pooled_projection_dim),
    ...linearShapes("norm_out.linear", 2 * d, d),
    ...linearShapes("proj_out", c.in_channels, d),
  ];
  for (let i = 0; i < c.num_layers; i++) {
    const b = `transformer_blocks.${i}`;
    shapes.push(
      ...linearShapes(`${b}.norm1.linear`, 6 * d, d),
      ...linearShapes(`${b}.norm1_context.linear`, 6 * d, d),
    );
    for (
      const n of ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
    ) {
      shapes.push(...linearShapes(`${b}.attn.${n}`, d, d));
    }
    for (const n of ["norm_q", "norm_k", "norm_added_q", "norm_added_k"]) {
      shapes.push([`${b}.attn.${n}.weight`, [h]]);
    }
    for (const ff of ["ff", "ff_context"]) {
      shapes.push(
        ...linearShapes(`${b}.${ff}.net.0.proj`, 4 * d, d),
        ...linearShapes(`${b}.${ff}.net.2`, d, 4 * d),
      );
    }
  }
  for (let i = 0; i < c.num_single_layers; i++) {
    const b = `single_transformer_blocks.${i}`;
    shapes.push(
      ...linearShapes(`${b}.norm.linear`, 3 * d, d),
      ...linearShapes(`${b}.proj_mlp`, 4 * d, d),
      ...linearShapes(`${b}.proj_out`, d, 5 * d),
      ...["to_q", "to_k", "to_v"].flatMap((n) => linearShapes(`${b}.attn.${n}`, d, d)),
      [`${b}.attn.norm_q.weight`, [h]],
      [`${b}.attn.norm_k.weight`, [h]],
    );
  }
  return new Map(shapes);
}

/** What a FLUX graph is built for: the batch, the packed latent grid (h/2 x w/2) and the text length. */
export interface FluxGraphShape {
  batch: number;
  gridHeight: number;
  gridWidth: number;
  textTokens: number;
}

/** diffusers' latent_image_ids: (0, row, col) per packed token; text ids are all zero. */
export function imageIds(gridHeight: number, gridWidth: number): Float32Array {
  const ids = new Float32Array(gridHeight * gridWidth * 3);
  for (let r = 0; r < gridHeight; r++) {
    for (let c = 0; c < gridWidth; c++) ids.set([0, r, c], (r * gridWidth + c) * 3);
  }
  return ids;
}

export class FluxTransformer {
  readonly #graphs = new GraphCache<DenoiserGraph>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly config: FluxTransformerConfig,
    private readonly weights: ModelWeights,
  ) {}

  static async load(ctx: GpuContext, dir: string, config: FluxTransformerConfig): Promise<FluxTransformer> {
    const d = fluxDims(config).inner;
    // proj_out of a single-stream block reads [attention | MLP]: loaded as its two column blocks.
    const columnBlocks = (name: string) =>
      /^single_transformer_blocks\.\d+\.proj_out\.weight$/.test(name) ? [d, 4 * d] : undefined;
    const weights = await loadWeights(ctx, dir, fluxTransformerShapes(config), { columnBlocks });
    return new FluxTransformer(ctx, config, new ModelWeights(weights));
  }

  get depth(): number {
    return fluxDims(this.config).blocks;
  }

  get weightBytes(): number {
    return this.weights.bytes;
  }

  /** Approximate FLOPs of one forward per sample at `shape` (matmuls and attention), for reports. */
  flopsPerSample(shape: FluxGraphShape): number {
    const d = fluxDims(this.config).inner;
    const [ni, nt] = [shape.gridHeight * shape.gridWidth, shape.textTokens];
    const n = ni + nt;
    const attention = 2 * 2 * n * n * d;
    const double = 2 * n * (4 * d * d + 8 * d * d) + attention;
    const single = 2 * n * (3 * d * d + 4 * d * d + 5 * d * d) + attention;
    return this.config.num_layers * double + this.config.num_single_layers * single;
  }

  graph(shape: FluxGraphShape): DenoiserGraph {
    const key = [shape.batch, shape.gridHeight, shape.gridWidth, shape.textTokens].join("x");
    return this.#graphs.get(key, () => this.#build(shape));
  }

  release(): void {
    this.#graphs.release();
    this.weights.release();
  }

  #build(s: FluxGraphShape): DenoiserGraph {
    const { ctx, config: c } = this;
    const d = fluxDims(c).inner;
    const owned = new Owned();
    const imageTokens = s.gridHeight * s.gridWidth;
    const tensor = (shape: number[], dtype: "f32" | "u32" = "f32") =>
      owned.add(ctx.pool.tensor(shape, dtype));
    const x = tensor([s.batch, imageTokens, c.in_channels]);
    const inputs = {
      encoder_hidden_states: tensor([s.batch, s.textTokens, c.joint_attention_dim]),
      pooled_projections: tensor([s.batch, c.pooled_projection_dim]),
      ...(c.guidance_embeds ? { guidance: tensor([s.batch]) } : {}),
    };
    const t = tensor([s.batch]);
    const streams = { image: tensor([s.batch, imageTokens, d]), text: tensor([s.batch, s.textTokens, d]) };
    try {
      const axes = { axesDim: c.axes_dims_rope, theta: 10000 };
      const tables = {
        image: owned.add(ropeTable(ctx, imageIds(s.gridHeight, s.gridWidth), [imageTokens, 3], axes)),
        text: owned.add(ropeTable(ctx, new Float32Array(s.textTokens * 3), [s.textTokens, 3], axes)),
      };
      const prologue: Command[] = [];
      const run = <T extends { dispatches: Command[]; out: Tensor; release(): void }>(op: T) => {
        owned.add(op);
        prologue.push(...op.dispatches);
        return op.out;
      };
      const w = (name: string) => this.weights.get(name);
      const lin = (input: Tensor, name: string, o: Parameters<typeof linear>[3] = {}) =>
        run(linear(ctx, input, w(`${name}.weight`), { bias: w(`${name}.bias`), ...o }));
      lin(x, "x_embedder", { out: { tensor: streams.image } });
      lin(inputs.encoder_hidden_states, "context_embedder", { out: { tensor: streams.text } });
      const temb = tensor([s.batch, d]);
      const embed = (input: Tensor, name: string, first: boolean) =>
        lin(lin(input, `${name}.linear_1`, { activation: "silu" }), `${name}.linear_2`, {
          out: { tensor: temb },
          accumulate: !first,
        });
      // diffusers scales the [0, 1] timestep (and the guidance scale) by 1000 before the sinusoids.
      const sinusoids = (input: Tensor) =>
        run(
          timestepEmbedding(ctx, input, {
            dim: FREQUENCIES,
            flipSinToCos: true,
            downscaleFreqShift: 0,
            scale: 1000,
            maxPeriod: 10000,
          }),
        );
      embed(sinusoids(t), "time_text_embed.timestep_embedder", true);
      if (inputs.guidance) embed(sinusoids(inputs.guidance), "time_text_embed.guidance_embedder", false);
      embed(inputs.pooled_projections, "time_text_embed.text_embedder", false);
      const activated = run(silu(ctx, temb));
      const mod = (name: string) => lin(activated, name);
      const shape: FluxShape = {
        batch: s.batch,
        imageTokens,
        textTokens: s.textTokens,
        inner: d,
        heads: c.num_attention_heads,
        headDim: c.attention_head_dim,
      };
      const builder = new FluxBlockBuilder(ctx, this.weights, owned, shape, streams, tables);
      const blocks = [
        ...Array.from({ length: c.num_layers }, (_, i) => {
          const b = `transformer_blocks.${i}`;
          return builder.double(i, {
            image: mod(`${b}.norm1.linear`),
            text: mod(`${b}.norm1_context.linear`),
          });
        }),
        ...Array.from(
          { length: c.num_single_layers },
          (_, i) => builder.single(i, mod(`single_transformer_blocks.${i}.norm.linear`)),
        ),
      ];
      const finalMod = mod("norm_out.linear");
      const epilogue: Command[] = [];
      const normOut = owned.add(
        layerNormModulate(ctx, streams.image, finalMod, { shift: 1, scale: 0, eps: FLUX_EPS }),
      );
      const projected = owned.add(
        linear(ctx, normOut.out, w("proj_out.weight"), { bias: w("proj_out.bias") }),
      );
      epilogue.push(...normOut.dispatches, ...projected.dispatches);
      return {
        batch: s.batch,
        x,
        t,
        inputs,
        hidden: streams.image,
        streams,
        prologue,
        blocks,
        modulatedInput: modulatedInputOf(blocks[0], builder.firstImageNorm!),
        epilogue,
        output: projected.out,
        stages: { temb, norm_out: normOut.out },
        release: () => owned.release(),
      };
    } catch (e) {
      owned.release();
      throw e;
    }
  }
}
