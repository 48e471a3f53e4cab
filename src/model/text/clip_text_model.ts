// transformers' CLIPTextModel (FLUX's text_encoder, CLIP-L), computed as transformers does: token embedding +
// learned position embedding, pre-LN encoder layers (layer_norm1 -> causal self-attention -> residual,
// layer_norm2 -> fc1 -> activation -> fc2 -> residual), final_layer_norm. pooler_output is the final state
// of one row per sequence, chosen by transformers' rule for the config's eos_token_id (pooledPositions).
// Checkpoints come in two key layouts: "text_model."-prefixed (transformers 4.x, FLUX's text_encoder) and
// bare (transformers 5); weights are held under the bare names.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, disposeDispatches } from "../../gpu/kernel.ts";
import { Owned } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { flashAttention } from "../../ops/attention.ts";
import { embeddingLookup } from "../../ops/embedding_lookup.ts";
import { type Activation, type Linear, linear, type LinearOptions } from "../../ops/linear.ts";
import { layerNorm } from "../../ops/norm.ts";
import { openCheckpoint } from "../checkpoint.ts";
import { GraphCache, ModelWeights } from "../model_weights.ts";
import { loadCheckpoint, type ShapeSpec } from "../weights.ts";
import type { ClipTextConfig } from "./config.ts";
import {
  checkGraphShape,
  type TextEncoderGraph,
  TextEncoderInputError,
  TRANSFORMERS_STEM,
  writeTokenIds,
} from "./text_encoder.ts";

const MODEL = "CLIPTextModel";
const LEGACY_PREFIX = "text_model.";
/** Configs written before transformers PR #24773 carry eos_token_id 2 and pool at the highest id. */
const LEGACY_EOS_TOKEN_ID = 2;
const ACTIVATIONS: Record<ClipTextConfig["hidden_act"], Activation> = {
  quick_gelu: "quick_gelu",
  gelu: "gelu_erf",
};

/** Checkpoint keys (without a prefix) and shapes of a config. */
export function clipTextShapes(c: ClipTextConfig): ShapeSpec {
  const d = c.hidden_size;
  const affine = (name: string, out: number, inp?: number): [string, number[]][] => [
    [`${name}.weight`, inp === undefined ? [out] : [out, inp]],
    [`${name}.bias`, [out]],
  ];
  const shapes: [string, number[]][] = [
    ["embeddings.token_embedding.weight", [c.vocab_size, d]],
    ["embeddings.position_embedding.weight", [c.max_position_embeddings, d]],
    ...affine("final_layer_norm", d),
  ];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const layer = `encoder.layers.${i}`;
    shapes.push(
      ...affine(`${layer}.layer_norm1`, d),
      ...["q_proj", "k_proj", "v_proj", "out_proj"].flatMap((n) => affine(`${layer}.self_attn.${n}`, d, d)),
      ...affine(`${layer}.layer_norm2`, d),
      ...affine(`${layer}.mlp.fc1`, c.intermediate_size, d),
      ...affine(`${layer}.mlp.fc2`, d, c.intermediate_size),
    );
  }
  return new Map(shapes);
}

/**
 * The position pooler_output takes in each row of ids [batch, length], as transformers picks it: with the
 * legacy eos_token_id 2 the first highest id (CLIP's end-of-text token is the last of its vocabulary),
 * otherwise the first eos_token_id (0 when a row has none: argmax of all zeros).
 */
export function pooledPositions(ids: Uint32Array, batch: number, eosTokenId: number): number[] {
  const length = ids.length / batch;
  return Array.from({ length: batch }, (_, b) => {
    const row = ids.subarray(b * length, (b + 1) * length);
    if (eosTokenId !== LEGACY_EOS_TOKEN_ID) return Math.max(0, row.indexOf(eosTokenId));
    return row.indexOf(row.reduce((a, id) => Math.max(a, id), 0));
  });
}

export interface ClipTextGraph extends TextEncoderGraph {
  /** [batch, hidden]: rows of lastHiddenState at the pooled positions. */
  poolerOutput: Tensor;
  /** u32 [batch]: b * length + the pooled position of row b, written with the ids. */
  pooledRows: Tensor;
}

export class ClipTextModel {
  readonly #graphs = new GraphCache<ClipTextGraph>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly config: ClipTextConfig,
    private readonly weights: ModelWeights,
  ) {}

  static async load(ctx: GpuContext, dir: string, config: ClipTextConfig): Promise<ClipTextModel> {
    const checkpoint = await openCheckpoint(dir, TRANSFORMERS_STEM);
    const prefix = checkpoint.tensors.has(`${LEGACY_PREFIX}embeddings.token_embedding.weight`)
      ? LEGACY_PREFIX
      : "";
    const shapes = [...clipTextShapes(config)].map(([name, shape]) => [prefix + name, shape] as const);
    const tensors = await loadCheckpoint(ctx, checkpoint, new Map(shapes));
    const bare = [...tensors].map(([name, t]) => [name.slice(prefix.length), t] as const);
    return new ClipTextModel(ctx, config, new ModelWeights(new Map(bare)));
  }

  /** The graph of `batch` sequences of `length` tokens (FLUX: 77, the whole position table). */
  graph(batch: number, length = this.config.max_position_embeddings): ClipTextGraph {
    checkGraphShape(MODEL, batch, length);
    const positions = this.config.max_position_embeddings;
    if (length > positions) {
      throw new TextEncoderInputError(
        MODEL,
        `sequence length ${length} exceeds the position table's max_position_embeddings ${positions}`,
      );
    }
    return this.#graphs.get(`${batch}x${length}`, () => this.#build(batch, length));
  }

  /** Writes input_ids [batch, length] and the rows they pool. */
  writeInputIds(graph: ClipTextGraph, ids: Uint32Array): void {
    writeTokenIds(this.ctx, MODEL, graph, ids, this.config.vocab_size);
    const positions = pooledPositions(ids, graph.batch, this.config.eos_token_id);
    this.ctx.pool.write(graph.pooledRows, Uint32Array.from(positions, (n, b) => b * graph.length + n));
  }

  release(): void {
    this.#graphs.release();
    this.weights.release();
  }

  #w(name: string): Tensor {
    return this.weights.get(name);
  }

  /** The nn.Linear `name` (weight and bias) applied to x. */
  #linear(name: string, x: Tensor, options: LinearOptions = {}): Linear {
    return linear(this.ctx, x, this.#w(`${name}.weight`), { bias: this.#w(`${name}.bias`), ...options });
  }

  /** The nn.LayerNorm `name` (weight and bias) of x, into a new tensor. */
  #layerNorm(name: string, x: Tensor) {
    return layerNorm(this.ctx, x, {
      weight: this.#w(`${name}.weight`),
      bias: this.#w(`${name}.bias`),
      eps: this.config.layer_norm_eps,
    });
  }

  #build(batch: number, length: number): ClipTextGraph {
    const { ctx, config: c } = this;
    const rows = batch * length;
    const owned = new Owned();
    try {
      const inputIds = owned.add(ctx.pool.tensor([rows], "u32"));
      const positions = Uint32Array.from({ length: rows }, (_, i) => i % length);
      const positionIds = owned.add(ctx.pool.upload(positions, [rows]));
      const hidden = owned.add(ctx.pool.tensor([batch, length, c.hidden_size]));
      const flat = hidden.view([rows, c.hidden_size]);
      // token_embedding(ids) + position_embedding(positions): one f32 rounding, as in transformers.
      const embeddings = [
        this.#lookup(owned, this.#w("embeddings.token_embedding.weight"), inputIds, flat, false),
        this.#lookup(owned, this.#w("embeddings.position_embedding.weight"), positionIds, flat, true),
      ];
      const layers = Array.from({ length: c.num_hidden_layers }, (_, i) => this.#layer(owned, i, hidden));
      const norm = owned.add(this.#layerNorm("final_layer_norm", hidden));
      const pooledRows = owned.add(ctx.pool.tensor([batch], "u32"));
      const poolerOutput = owned.add(ctx.pool.tensor([batch, c.hidden_size]));
      const pool = this.#lookup(owned, norm.out.view([rows, c.hidden_size]), pooledRows, poolerOutput, false);
      return {
        batch,
        length,
        inputIds,
        hidden,
        embeddings,
        layers,
        final: [...norm.dispatches, pool],
        lastHiddenState: norm.out,
        poolerOutput,
        pooledRows,
        release: () => owned.release(),
      };
    } catch (e) {
      owned.release();
      throw e;
    }
  }

  /** out = table[ids] (or +=): the embeddings, and the pooled rows of the final states. */
  #lookup(owned: Owned, table: Tensor, ids: Tensor, out: Tensor, accumulate: boolean): Command {
    const dispatch = embeddingLookup(this.ctx, table, ids, out, { accumulate });
    owned.add({ release: () => disposeDispatches([dispatch]) });
    return dispatch;
  }

  /** x += out_proj(causal_attention(layer_norm1(x))); x += fc2(act(fc1(layer_norm2(x)))), in place. */
  #layer(owned: Owned, i: number, hidden: Tensor): Command[] {
    const { ctx, config: c } = this;
    const name = (n: string) => `encoder.layers.${i}.${n}`;
    const [batch, tokens, d] = hidden.shape;
    const residual = { out: { tensor: hidden }, accumulate: true };
    const norm1 = owned.add(this.#layerNorm(name("layer_norm1"), hidden));
    const qkv = owned.add(ctx.pool.tensor([batch, tokens, 3 * d]));
    const view = (k: number) => ({ tensor: qkv, offset: k * d, rowStride: 3 * d });
    const projections = ["q_proj", "k_proj", "v_proj"].map((n, k) =>
      owned.add(this.#linear(name(`self_attn.${n}`), norm1.out, { out: view(k) }))
    );
    const heads = c.num_attention_heads;
    const attention = owned.add(
      flashAttention(ctx, { q: view(0), k: view(1), v: view(2), tokens }, {
        batch,
        heads,
        headDim: d / heads,
      }, { causal: true }),
    );
    const out = owned.add(this.#linear(name("self_attn.out_proj"), attention.out, residual));
    const norm2 = owned.add(this.#layerNorm(name("layer_norm2"), hidden));
    const up = owned.add(this.#linear(name("mlp.fc1"), norm2.out, { activation: ACTIVATIONS[c.hidden_act] }));
    const down = owned.add(this.#linear(name("mlp.fc2"), up.out, residual));
    return [norm1, ...projections, attention, out, norm2, up, down].flatMap((op) => op.dispatches);
  }
}
