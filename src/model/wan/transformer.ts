// diffusers' WanTransformer3DModel (Wan2.1 text-to-video), computed as diffusers does. Prologue: the [1, 2, 2]
// patch embedding (Conv3d with stride = kernel, as im2col over the frames stacked into one tall image, then a
// linear), the condition embedder (timestep sinusoids cos-first -> time_embedder -> temb; SiLU -> time_proj
// -> timestep_proj [B, 6D]; text_embedder linear-GELU(tanh)-linear over the T5 embeddings), each block's
// modulation scale_shift_table + timestep_proj, and the 3-D RoPE table. Blocks: src/model/wan/blocks.ts,
// over the one stream `hidden`; the text stream is read only. Epilogue: norm_out (LayerNorm without affine)
// modulated by the output scale_shift_table + temb (shift first), proj_out, unpatchify to [B, C, F, H, W].
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand } from "../../gpu/kernel.ts";
import { Owned } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { axpy } from "../../ops/axpy.ts";
import { linear } from "../../ops/linear.ts";
import { silu } from "../../ops/modulate.ts";
import { layerNormModulate } from "../../ops/norm.ts";
import { im2col, unpatchify } from "../../ops/patch.ts";
import { ropeTable } from "../../ops/rope.ts";
import { timestepEmbedding } from "../../ops/timestep_embedding.ts";
import { type DenoiserGraph, modulatedInputOf } from "../denoiser_graph.ts";
import { GraphCache, ModelWeights } from "../model_weights.ts";
import { loadWeights, type ShapeSpec } from "../weights.ts";
import { WanBlockBuilder } from "./blocks.ts";
import { wanDims, type WanTransformerConfig } from "./config.ts";
import { planWanGraph, type WanGraphShape } from "./graph_plan.ts";

export type { WanGraphShape } from "./graph_plan.ts";

const ROPE_THETA = 10000;

type Shapes = [string, number[]][];

const linearShapes = (name: string, out: number, inp: number): Shapes => [
  [`${name}.weight`, [out, inp]],
  [`${name}.bias`, [out]],
];

export function wanTransformerShapes(c: WanTransformerConfig): ShapeSpec {
  const { inner: d, outChannels, patchVolume } = wanDims(c);
  const shapes: Shapes = [
    ["patch_embedding.weight", [d, c.in_channels, ...c.patch_size]],
    ["patch_embedding.bias", [d]],
    ...linearShapes("condition_embedder.time_embedder.linear_1", d, c.freq_dim),
    ...linearShapes("condition_embedder.time_embedder.linear_2", d, d),
    ...linearShapes("condition_embedder.time_proj", 6 * d, d),
    ...linearShapes("condition_embedder.text_embedder.linear_1", d, c.text_dim),
    ...linearShapes("condition_embedder.text_embedder.linear_2", d, d),
    ...linearShapes("proj_out", outChannels * patchVolume, d),
    ["scale_shift_table", [1, 2, d]],
  ];
  for (let i = 0; i < c.num_layers; i++) {
    const b = `blocks.${i}`;
    for (const attn of ["attn1", "attn2"]) {
      for (const n of ["to_q", "to_k", "to_v", "to_out.0"]) {
        shapes.push(...linearShapes(`${b}.${attn}.${n}`, d, d));
      }
      shapes.push([`${b}.${attn}.norm_q.weight`, [d]], [`${b}.${attn}.norm_k.weight`, [d]]);
    }
    if (c.cross_attn_norm) shapes.push([`${b}.norm2.weight`, [d]], [`${b}.norm2.bias`, [d]]);
    shapes.push(
      ...linearShapes(`${b}.ffn.net.0.proj`, c.ffn_dim, d),
      ...linearShapes(`${b}.ffn.net.2`, d, c.ffn_dim),
      [`${b}.scale_shift_table`, [1, 6, d]],
    );
  }
  return new Map(shapes);
}

/** (frame, row, column) of every token, frame-major, as [tokens, 3]: the RoPE positions of each axis. */
export function wanPositionIds(frames: number, rows: number, columns: number): Float32Array {
  const ids = new Float32Array(frames * rows * columns * 3);
  let at = 0;
  for (let f = 0; f < frames; f++) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++, at += 3) ids.set([f, r, c], at);
    }
  }
  return ids;
}

export class WanTransformer {
  readonly #graphs = new GraphCache<DenoiserGraph>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly config: WanTransformerConfig,
    private readonly weights: ModelWeights,
  ) {}

  /** Loads `<dir>/diffusion_pytorch_model.safetensors` or its shards; F32, F16 and BF16 as stored. */
  static async load(ctx: GpuContext, dir: string, config: WanTransformerConfig): Promise<WanTransformer> {
    // diffusers ignores stray norm_added_q weights that some Wan checkpoints carry (unused even for I2V).
    const ignore = (name: string) => name.endsWith(".norm_added_q.weight");
    const weights = await loadWeights(ctx, dir, wanTransformerShapes(config), { ignore });
    return new WanTransformer(ctx, config, new ModelWeights(weights));
  }

  get depth(): number {
    return this.config.num_layers;
  }

  get weightBytes(): number {
    return this.weights.bytes;
  }

  /** Approximate FLOPs of one forward per sample at `shape` (matmuls and attention), for reports. */
  flopsPerSample(shape: WanGraphShape): number {
    const c = this.config;
    const { inner: d, outChannels, patchVolume } = wanDims(c);
    const n = (shape.frames * shape.height * shape.width) / patchVolume;
    const nt = shape.textTokens;
    const selfAttention = 2 * n * 4 * d * d + 2 * 2 * n * n * d;
    const cross = 2 * (2 * n + 2 * nt) * d * d + 2 * 2 * n * nt * d;
    const ffn = 2 * 2 * n * d * c.ffn_dim;
    const edges = 2 * n * d * patchVolume * (c.in_channels + outChannels);
    return c.num_layers * (selfAttention + cross + ffn) + edges;
  }

  /** The graph of `shape` (latent sizes), built on first use; throws a WanShapeError for a bad shape. */
  graph(shape: WanGraphShape): DenoiserGraph {
    const key = [shape.batch, shape.frames, shape.height, shape.width, shape.textTokens].join("x");
    return this.#graphs.get(key, () => this.#build(shape));
  }

  release(): void {
    this.#graphs.release();
    this.weights.release();
  }

  #build(s: WanGraphShape): DenoiserGraph {
    const { ctx, config: c } = this;
    const plan = planWanGraph(c, s, ctx.gpu.info.limits);
    const { inner: d, outChannels } = wanDims(c);
    const { tokens } = plan;
    const owned = new Owned();
    const tensor = (shape: number[]) => owned.add(ctx.pool.tensor(shape));
    try {
      const x = tensor([s.batch, c.in_channels, s.frames, s.height, s.width]);
      const t = tensor([s.batch]);
      const inputs = { encoder_hidden_states: tensor([s.batch, s.textTokens, c.text_dim]) };
      const hidden = tensor([s.batch, tokens, d]);
      const text = tensor([s.batch, s.textTokens, d]);
      const prologue: Command[] = [];
      const run = <T extends { dispatches: Command[]; out: Tensor; release(): void }>(
        op: T,
        list = prologue,
      ) => {
        owned.add(op);
        list.push(...op.dispatches);
        return op.out;
      };
      const w = (name: string) => this.weights.get(name);
      const lin = (input: Tensor, name: string, o: Parameters<typeof linear>[3] = {}) =>
        run(linear(ctx, input, w(`${name}.weight`), { bias: w(`${name}.bias`), ...o }));

      // Conv3d [D, C, 1, 2, 2] over [B, C, F, H, W]: with one frame per patch, 2x2 patches of the [F*H, W]
      // image of each channel, ordered (c, row, column) as the weight's flattened [D, C*4].
      const patches = run(im2col(ctx, x, {
        batch: s.batch,
        channels: c.in_channels,
        height: s.frames * s.height,
        width: s.width,
        kernel: 2,
        stride: 2,
        padding: 0,
        layout: "nchw",
      }));
      const patchWeight = w("patch_embedding.weight").view([d, c.in_channels * 4]);
      run(linear(ctx, patches, patchWeight, { bias: w("patch_embedding.bias"), out: { tensor: hidden } }));

      const embedder = "condition_embedder";
      const sinusoids = run(timestepEmbedding(ctx, t, {
        dim: c.freq_dim,
        flipSinToCos: true,
        downscaleFreqShift: 0,
        scale: 1,
        maxPeriod: 10000,
      }));
      const temb = lin(
        lin(sinusoids, `${embedder}.time_embedder.linear_1`, { activation: "silu" }),
        `${embedder}.time_embedder.linear_2`,
      );
      const timestepProj = lin(run(silu(ctx, temb)), `${embedder}.time_proj`);
      const textHidden = lin(inputs.encoder_hidden_states, `${embedder}.text_embedder.linear_1`, {
        activation: "gelu_tanh",
      });
      lin(textHidden, `${embedder}.text_embedder.linear_2`, { out: { tensor: text } });

      const [frames, rows, columns] = plan.grid;
      const table = owned.add(ropeTable(ctx, wanPositionIds(frames, rows, columns), [tokens, 3], {
        axesDim: wanDims(c).ropeAxes,
        theta: ROPE_THETA,
      }));
      const builder = new WanBlockBuilder(
        ctx,
        c,
        this.weights,
        owned,
        { batch: s.batch, tokens, textTokens: s.textTokens, inner: d, ffnChunkRows: plan.ffnChunkRows },
        { hidden, text },
        table,
      );
      const blocks = Array.from({ length: c.num_layers }, (_, i) => {
        const mod = this.#tablePlus(owned, prologue, w(`blocks.${i}.scale_shift_table`), timestepProj);
        return builder.block(i, mod);
      });

      // shift, scale = scale_shift_table [1, 2, D] + temb [B, 1, D]: temb repeated into both chunks.
      const tembTwice = tensor([s.batch, 2 * d]);
      for (let b = 0; b < s.batch; b++) {
        for (const chunk of [0, 1]) {
          prologue.push(copyCommand("wan temb chunk", temb, tembTwice, {
            srcOffset: b * d * 4,
            dstOffset: (2 * b + chunk) * d * 4,
            bytes: d * 4,
          }));
        }
      }
      const outMod = this.#tablePlus(owned, prologue, w("scale_shift_table"), tembTwice);
      const epilogue: Command[] = [];
      const normOut = run(
        layerNormModulate(ctx, hidden, outMod, { shift: 0, scale: 1, eps: c.eps }),
        epilogue,
      );
      const projected = run(
        linear(ctx, normOut, w("proj_out.weight"), { bias: w("proj_out.bias") }),
        epilogue,
      );
      const video = run(
        unpatchify(ctx, projected, {
          batch: s.batch,
          channels: outChannels,
          height: s.frames * s.height,
          width: s.width,
          patch: 2,
          order: "channels_last",
        }),
        epilogue,
      );
      return {
        batch: s.batch,
        x,
        t,
        inputs,
        hidden,
        prologue,
        blocks,
        modulatedInput: modulatedInputOf(blocks[0], builder.firstImageNorm!),
        epilogue,
        output: video.view([s.batch, outChannels, s.frames, s.height, s.width]),
        stages: {
          temb,
          timestep_proj: timestepProj,
          text_embedder: text,
          norm_out: normOut,
        },
        release: () => owned.release(),
      };
    } catch (e) {
      owned.release();
      throw e;
    }
  }

  /**
   * table [1, k, D] (a scale_shift_table) + x [B, k*D] per sample, as diffusers adds them: the table copied
   * into each sample's row, then x added in place (one f32 rounding, the same as PyTorch's).
   */
  #tablePlus(owned: Owned, commands: Command[], table: Tensor, x: Tensor): Tensor {
    const [batch, width] = x.shape;
    const out = owned.add(this.ctx.pool.tensor([batch, width]));
    for (let b = 0; b < batch; b++) {
      commands.push(copyCommand("wan scale_shift_table", table, out, { dstOffset: b * width * 4 }));
    }
    const sum = owned.add(axpy(this.ctx, x, out, { alpha: 1, inPlace: true }));
    commands.push(...sum.dispatches);
    return out;
  }
}
