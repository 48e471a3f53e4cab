// transformers' T5EncoderModel (FLUX's text_encoder_2, T5 v1.1 XXL) and UMT5EncoderModel (Wan's
// text_encoder, umT5-XXL), computed as transformers does: the shared token embedding, blocks of T5LayerNorm
// (RMS norm with a weight, no bias) -> self-attention without the 1/sqrt(d) scale plus a relative position
// bias -> residual, T5LayerNorm -> gated-GELU feed-forward (gelu_new(wi_0 x) * wi_1 x -> wo) -> residual, then
// final_layer_norm. Everything is computed in f32, so the residual stream and the feed-forward output cannot
// overflow as they do in f16; matrices (and the bias tables) are read as stored.
// The one difference between the two: T5's position bias [heads, L, L] comes from block 0's
// relative_attention_bias table and is shared by every block, UMT5's blocks each gather their own table.
// The bias is gathered on the GPU into one tensor (src/ops/relative_position_bias.ts): once after the
// embeddings (T5) or at the start of every block (UMT5). The buckets of the offsets depend only on L and are
// computed on the host once per graph. An attention mask (WanPipeline passes one; FluxPipeline none) is a
// count of real tokens at the start of a row: the keys after them are masked in the same bias, so it needs a
// batch of one row, whose bias no other row shares.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, disposeDispatches } from "../../gpu/kernel.ts";
import { Owned } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { flashAttention } from "../../ops/attention.ts";
import { embeddingLookup } from "../../ops/embedding_lookup.ts";
import { linear } from "../../ops/linear.ts";
import { rmsNorm } from "../../ops/norm.ts";
import { relativePositionBias } from "../../ops/relative_position_bias.ts";
import { openCheckpoint } from "../checkpoint.ts";
import { GraphCache, ModelWeights } from "../model_weights.ts";
import { loadCheckpoint, type ShapeSpec } from "../weights.ts";
import { relativeBucketsOf, type T5Config } from "./config.ts";
import {
  checkGraphShape,
  type TextEncoderGraph,
  TextEncoderInputError,
  TRANSFORMERS_STEM,
  writeTokenIds,
} from "./text_encoder.ts";

/** transformers 4.x may store the encoder's tied copy of shared.weight; it is the same table. */
const TIED_EMBEDDING = "encoder.embed_tokens.weight";

/** The class name, for errors. */
const modelName = (c: T5Config) => c.model_type === "umt5" ? "UMT5EncoderModel" : "T5EncoderModel";

/** Every layer has its own position bias table (UMT5), or all share block 0's (T5). */
const biasPerLayer = (c: T5Config) => c.model_type === "umt5";

/** The relative_attention_bias [buckets, heads] that layer i adds. */
function biasTableOf(c: T5Config, layer: number): string {
  return `encoder.block.${biasPerLayer(c) ? layer : 0}.layer.0.SelfAttention.relative_attention_bias.weight`;
}

/** Checkpoint keys and shapes of a config. */
export function t5EncoderShapes(c: T5Config): ShapeSpec {
  const d = c.d_model;
  const inner = c.num_heads * c.d_kv;
  const shapes: [string, number[]][] = [
    ["shared.weight", [c.vocab_size, d]],
    ["encoder.final_layer_norm.weight", [d]],
  ];
  for (let i = 0; i < c.num_layers; i++) {
    const attention = `encoder.block.${i}.layer.0`;
    const ff = `encoder.block.${i}.layer.1`;
    if (i === 0 || biasPerLayer(c)) {
      shapes.push([biasTableOf(c, i), [c.relative_attention_num_buckets, c.num_heads]]);
    }
    shapes.push(
      ...["q", "k", "v"].map((
        n,
      ): [string, number[]] => [`${attention}.SelfAttention.${n}.weight`, [inner, d]]),
      [`${attention}.SelfAttention.o.weight`, [d, inner]],
      [`${attention}.layer_norm.weight`, [d]],
      [`${ff}.DenseReluDense.wi_0.weight`, [c.d_ff, d]],
      [`${ff}.DenseReluDense.wi_1.weight`, [c.d_ff, d]],
      [`${ff}.DenseReluDense.wo.weight`, [d, c.d_ff]],
      [`${ff}.layer_norm.weight`, [d]],
    );
  }
  return new Map(shapes);
}

/**
 * T5Attention._relative_position_bucket, bidirectional, of relative = key - query: exact buckets for short
 * distances, then logarithmic ones up to max_distance, the last bucket beyond. The logarithm is rounded in
 * float32 step by step as torch computes it: where a distance's log ratio is a whole number in exact
 * arithmetic (18 buckets with max distance 128: distances 8, 16, 64), float64 truncates it into the bucket
 * below torch's. FLUX's 32 / 128 has no such distance.
 */
export function relativePositionBucket(relative: number, c: T5Config): number {
  const { perDirection, maxExact } = relativeBucketsOf(c);
  const offset = relative > 0 ? perDirection : 0;
  const distance = Math.abs(relative);
  if (distance < maxExact) return offset + distance;
  const f = Math.fround;
  const octaves = f(Math.log(f(distance / maxExact)));
  const range = f(Math.log(c.relative_attention_max_distance / maxExact));
  const large = maxExact + Math.trunc(f(f(octaves / range) * (perDirection - maxExact)));
  return offset + Math.min(large, perDirection - 1);
}

export interface T5EncoderGraph extends TextEncoderGraph {
  /**
   * [heads, length, length]: the score bias of the last block that ran (T5: every block's), masked after the
   * real tokens that writeInputIds was given.
   */
  positionBias: Tensor;
  /** u32 [1]: the real tokens, whose keys are unmasked. */
  keys: Tensor;
}

export class T5Encoder {
  readonly #graphs = new GraphCache<T5EncoderGraph>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly config: T5Config,
    private readonly weights: ModelWeights,
  ) {}

  static async load(ctx: GpuContext, dir: string, config: T5Config): Promise<T5Encoder> {
    const checkpoint = await openCheckpoint(dir, TRANSFORMERS_STEM);
    const tensors = await loadCheckpoint(ctx, checkpoint, t5EncoderShapes(config), {
      ignore: (name) => name === TIED_EMBEDDING,
    });
    return new T5Encoder(ctx, config, new ModelWeights(tensors));
  }

  /** The graph of `batch` sequences of `length` tokens (FLUX: 512, or 256 for schnell; Wan: 512). */
  graph(batch: number, length: number): T5EncoderGraph {
    checkGraphShape(modelName(this.config), batch, length);
    return this.#graphs.get(`${batch}x${length}`, () => this.#build(batch, length));
  }

  /**
   * input_ids [batch, length]; `tokens`: the real tokens at the start of the (single) row, as the attention
   * mask of a right-padded prompt says (transformers' attention_mask.sum()); the keys after them are masked.
   * Default: all `length` (no mask, as FluxPipeline calls T5).
   */
  writeInputIds(graph: T5EncoderGraph, ids: Uint32Array, tokens = graph.length): void {
    const model = modelName(this.config);
    if (!Number.isInteger(tokens) || tokens < 1 || tokens > graph.length) {
      throw new TextEncoderInputError(model, `tokens ${tokens} must be an integer in 1..${graph.length}`);
    }
    if (tokens < graph.length && graph.batch !== 1) {
      throw new TextEncoderInputError(
        model,
        `an attention mask (tokens ${tokens} < length ${graph.length}) needs a graph of batch 1, not ` +
          `${graph.batch}: the masked score bias is the row's own`,
      );
    }
    writeTokenIds(this.ctx, model, graph, ids, this.config.vocab_size);
    this.ctx.pool.write(graph.keys, Uint32Array.of(tokens));
  }

  release(): void {
    this.#graphs.release();
    this.weights.release();
  }

  #w(name: string): Tensor {
    return this.weights.get(name);
  }

  #build(batch: number, length: number): T5EncoderGraph {
    const { ctx, config: c } = this;
    const rows = batch * length;
    const owned = new Owned();
    try {
      const inputIds = owned.add(ctx.pool.tensor([rows], "u32"));
      const hidden = owned.add(ctx.pool.tensor([batch, length, c.d_model]));
      const embed = embeddingLookup(ctx, this.#w("shared.weight"), inputIds, hidden.view([rows, c.d_model]), {
        accumulate: false,
      });
      owned.add({ release: () => disposeDispatches([embed]) });
      const positionBias = owned.add(ctx.pool.tensor([c.num_heads, length, length]));
      const keys = owned.add(ctx.pool.upload(Uint32Array.of(length), [1]));
      // The buckets of offsets j - i from -(length - 1) to length - 1.
      const buckets = Uint32Array.from(
        { length: 2 * length - 1 },
        (_, n) => relativePositionBucket(n - length + 1, c),
      );
      const bucket = owned.add(ctx.pool.upload(buckets, [buckets.length]));
      const gatherBias = (layer: number) => {
        const dispatch = relativePositionBias(
          ctx,
          this.#w(biasTableOf(c, layer)),
          bucket,
          keys,
          positionBias,
        );
        owned.add({ release: () => disposeDispatches([dispatch]) });
        return dispatch;
      };
      const embeddings = [embed, ...(biasPerLayer(c) ? [] : [gatherBias(0)])];
      const layers = Array.from({ length: c.num_layers }, (_, i) => [
        ...(biasPerLayer(c) ? [gatherBias(i)] : []),
        ...this.#block(owned, i, hidden, positionBias),
      ]);
      const norm = owned.add(rmsNorm(ctx, hidden, {
        weight: this.#w("encoder.final_layer_norm.weight"),
        eps: c.layer_norm_epsilon,
      }));
      return {
        batch,
        length,
        inputIds,
        hidden,
        embeddings,
        layers,
        final: norm.dispatches,
        lastHiddenState: norm.out,
        positionBias,
        keys,
        release: () => owned.release(),
      };
    } catch (e) {
      owned.release();
      throw e;
    }
  }

  /** x += o(attention(layer_norm(x)) + bias); x += wo(gelu_new(wi_0 y) * wi_1 y), y = layer_norm(x). */
  #block(owned: Owned, i: number, hidden: Tensor, positionBias: Tensor): Command[] {
    const { ctx, config: c } = this;
    const w = (name: string) => this.#w(`encoder.block.${i}.${name}`);
    const eps = c.layer_norm_epsilon;
    const [batch, tokens] = hidden.shape;
    const inner = c.num_heads * c.d_kv;
    const residual = { out: { tensor: hidden }, accumulate: true };
    const norm1 = owned.add(rmsNorm(ctx, hidden, { weight: w("layer.0.layer_norm.weight"), eps }));
    const qkv = owned.add(ctx.pool.tensor([batch, tokens, 3 * inner]));
    const view = (k: number) => ({ tensor: qkv, offset: k * inner, rowStride: 3 * inner });
    const projections = ["q", "k", "v"].map((n, k) =>
      owned.add(linear(ctx, norm1.out, w(`layer.0.SelfAttention.${n}.weight`), { out: view(k) }))
    );
    const attention = owned.add(
      flashAttention(ctx, { q: view(0), k: view(1), v: view(2), tokens }, {
        batch,
        heads: c.num_heads,
        headDim: c.d_kv,
      }, { scale: 1, scoreBias: positionBias }),
    );
    const out = owned.add(linear(ctx, attention.out, w("layer.0.SelfAttention.o.weight"), residual));
    const norm2 = owned.add(rmsNorm(ctx, hidden, { weight: w("layer.1.layer_norm.weight"), eps }));
    const ff = (name: string) => w(`layer.1.DenseReluDense.${name}.weight`);
    const linearPart = owned.add(linear(ctx, norm2.out, ff("wi_1")));
    const gated = owned.add(linear(ctx, norm2.out, ff("wi_0"), {
      activation: "gelu_tanh",
      multiply: linearPart.out,
    }));
    const down = owned.add(linear(ctx, gated.out, ff("wo"), residual));
    return [norm1, ...projections, attention, out, norm2, linearPart, gated, down].flatMap((op) =>
      op.dispatches
    );
  }
}
