// The two block kinds of FluxTransformer2DModel, built as dispatch lists over the two streams, each its own
// tensor: image tokens [B, Ni, D] and text tokens [B, Nt, D]. Every block updates both in place, so a cache
// strategy sees one list of num_layers + num_single_layers blocks over two streams (cache-dit's FLUX view).
//   double-stream (FluxTransformerBlock): per-stream adaLN-Zero, q/k/v and q/k RMSNorm, RoPE, one joint
//     attention over [text, image], then per-stream output projection, norm2 and GELU-tanh feed-forward;
//   single-stream (FluxSingleTransformerBlock): one 3-way modulation for both streams, shared q/k/v, joint
//     attention and an MLP side by side, proj_out over their concatenation, done as proj_out's two column
//     blocks (loaded apart) applied to each half, so no concatenated tensor exists.
// Field names follow the checkpoint keys.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand } from "../../gpu/kernel.ts";
import type { Owned } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { flashAttention } from "../../ops/attention.ts";
import { type Activation, type GateView, linear } from "../../ops/linear.ts";
import { layerNormModulate, rmsNormInPlace } from "../../ops/norm.ts";
import { rope, type RopeTable } from "../../ops/rope.ts";
import type { ModelWeights } from "../model_weights.ts";

/** AdaLayerNormZero's, norm2's and the q/k RMSNorms' eps in FLUX. */
export const FLUX_EPS = 1e-6;

export interface Streams {
  image: Tensor;
  text: Tensor;
}

export interface FluxShape {
  batch: number;
  imageTokens: number;
  textTokens: number;
  inner: number;
  heads: number;
  headDim: number;
}

type Stream = keyof Streams;

interface AttentionNames {
  q: string;
  k: string;
  v: string;
  normQ: string;
  normK: string;
}

/** Builds block dispatch lists; every tensor it makes is owned by the graph being built. */
export class FluxBlockBuilder {
  readonly #commands: Command[] = [];
  /** The first block's adaLN-modulated image input (TeaCache's probe). */
  firstImageNorm: { dispatches: Command[]; out: Tensor } | null = null;

  constructor(
    private readonly ctx: GpuContext,
    private readonly weights: ModelWeights,
    private readonly owned: Owned,
    private readonly shape: FluxShape,
    private readonly streams: Streams,
    private readonly tables: Record<Stream, RopeTable>,
  ) {}

  /** FluxTransformerBlock i; mods [B, 6D] of norm1 (image) and norm1_context (text). */
  double(i: number, mods: Record<Stream, Tensor>): Command[] {
    const b = `transformer_blocks.${i}`;
    const normed = {
      image: this.#modulatedNorm("image", mods.image, 0, 1),
      text: this.#modulatedNorm("text", mods.text, 0, 1),
    };
    const names = (prefix: string, added: boolean): AttentionNames => ({
      q: `${prefix}.${added ? "add_q_proj" : "to_q"}`,
      k: `${prefix}.${added ? "add_k_proj" : "to_k"}`,
      v: `${prefix}.${added ? "add_v_proj" : "to_v"}`,
      normQ: `${prefix}.${added ? "norm_added_q" : "norm_q"}`,
      normK: `${prefix}.${added ? "norm_added_k" : "norm_k"}`,
    });
    const attended = this.#jointAttention({
      image: { x: normed.image, names: names(`${b}.attn`, false) },
      text: { x: normed.text, names: names(`${b}.attn`, true) },
    });
    for (
      const [stream, out, ff] of [["image", "to_out.0", "ff"], ["text", "to_add_out", "ff_context"]] as const
    ) {
      const gate = (chunk: number) => this.#gate(mods[stream], chunk, 6);
      this.#linear(attended[stream], `${b}.attn.${out}`, { out: this.streams[stream], gate: gate(2) });
      const n2 = this.#modulatedNorm(stream, mods[stream], 3, 4);
      const hidden = this.#linear(n2, `${b}.${ff}.net.0.proj`, { activation: "gelu_tanh" });
      this.#linear(hidden, `${b}.${ff}.net.2`, { out: this.streams[stream], gate: gate(5) });
    }
    return this.#take();
  }

  /** FluxSingleTransformerBlock i; mod [B, 3D]: shift, scale, gate, shared by both streams. */
  single(i: number, mod: Tensor): Command[] {
    const b = `single_transformer_blocks.${i}`;
    const normed = {
      image: this.#modulatedNorm("image", mod, 0, 1),
      text: this.#modulatedNorm("text", mod, 0, 1),
    };
    const names: AttentionNames = {
      q: `${b}.attn.to_q`,
      k: `${b}.attn.to_k`,
      v: `${b}.attn.to_v`,
      normQ: `${b}.attn.norm_q`,
      normK: `${b}.attn.norm_k`,
    };
    const attended = this.#jointAttention({
      image: { x: normed.image, names },
      text: { x: normed.text, names },
    });
    for (const stream of ["image", "text"] as const) {
      const gate = this.#gate(mod, 2, 3);
      const mlp = this.#linear(normed[stream], `${b}.proj_mlp`, { activation: "gelu_tanh" });
      this.#linear(attended[stream], `${b}.proj_out.weight#0`, {
        bias: `${b}.proj_out.bias`,
        out: this.streams[stream],
        gate,
      });
      this.#linear(mlp, `${b}.proj_out.weight#1`, { bias: null, out: this.streams[stream], gate });
    }
    return this.#take();
  }

  #take(): Command[] {
    return this.#commands.splice(0);
  }

  #tokens(stream: Stream): number {
    return stream === "image" ? this.shape.imageTokens : this.shape.textTokens;
  }

  /** Gate chunk of a [B, k*D] modulation, one vector per sample (#linear sets the rows it spans). */
  #gate(mod: Tensor, chunk: number, chunks: number): GateView {
    const d = this.shape.inner;
    return { tensor: mod, offset: chunk * d, stride: chunks * d, rowsPerGate: 1 };
  }

  #modulatedNorm(stream: Stream, mod: Tensor, shift: number, scale: number): Tensor {
    const op = this.owned.add(
      layerNormModulate(this.ctx, this.streams[stream], mod, { shift, scale, eps: FLUX_EPS }),
    );
    this.#commands.push(...op.dispatches);
    if (stream === "image") this.firstImageNorm ??= op;
    return op.out;
  }

  /**
   * x W^T + b for weight `name` (`name.weight` unless it names a weight itself); bias `name.bias` unless
   * given (null: none). A gated linear adds onto `out`; its gate's rowsPerGate is the stream's tokens.
   */
  #linear(
    x: Tensor,
    name: string,
    o: {
      activation?: Activation;
      out?: Tensor;
      gate?: GateView;
      bias?: string | null;
    } = {},
  ): Tensor {
    const weight = name.includes(".weight") ? name : `${name}.weight`;
    const bias = o.bias === null ? undefined : this.weights.get(o.bias ?? `${name}.bias`);
    const gate = o.gate && { ...o.gate, rowsPerGate: x.shape[1] };
    const op = this.owned.add(linear(this.ctx, x, this.weights.get(weight), {
      bias,
      activation: o.activation,
      out: o.out && { tensor: o.out },
      gate,
    }));
    this.#commands.push(...op.dispatches);
    return op.out;
  }

  /**
   * q, k, v of each stream (its own projections), RMS-normed per head and rotated, one attention over the
   * concatenated [text, image] sequence per sample; returns each stream's rows of the result.
   */
  #jointAttention(inputs: Record<Stream, { x: Tensor; names: AttentionNames }>): Record<Stream, Tensor> {
    const { batch, inner: d, heads, headDim } = this.shape;
    const views = {} as Record<Stream, { q: View; k: View; v: View }>;
    for (const stream of ["image", "text"] as const) {
      const { x, names } = inputs[stream];
      const tokens = this.#tokens(stream);
      const qkv = this.owned.add(this.ctx.pool.tensor([batch, tokens, 3 * d]));
      const view = (k: number): View => ({ tensor: qkv, offset: k * d, rowStride: 3 * d });
      for (const [k, name] of [names.q, names.k, names.v].entries()) {
        const op = this.owned.add(linear(this.ctx, x, this.weights.get(`${name}.weight`), {
          bias: this.weights.get(`${name}.bias`),
          out: { tensor: qkv, offset: k * d, rowStride: 3 * d },
        }));
        this.#commands.push(...op.dispatches);
      }
      const rows = { tokens: batch * tokens, heads, headDim };
      for (const [k, norm] of [[0, names.normQ], [1, names.normK]] as const) {
        const op = this.owned.add(
          rmsNormInPlace(this.ctx, view(k), rows, {
            weight: this.weights.get(`${norm}.weight`),
            eps: FLUX_EPS,
          }),
        );
        this.#commands.push(...op.dispatches);
      }
      const rotation = this.owned.add(
        rope(this.ctx, [view(0), view(1)], this.tables[stream], { batch, heads, headDim }),
      );
      this.#commands.push(...rotation.dispatches);
      views[stream] = { q: view(0), k: view(1), v: view(2) };
    }
    const attention = this.owned.add(flashAttention(
      this.ctx,
      { ...views.image, tokens: this.shape.imageTokens },
      { batch, heads, headDim },
      { text: { ...views.text, tokens: this.shape.textTokens } },
    ));
    this.#commands.push(...attention.dispatches);
    return this.#split(attention.out);
  }

  /** The [B, Nt + Ni, D] attention output (text rows first per sample) as a text and an image tensor. */
  #split(joint: Tensor): Record<Stream, Tensor> {
    const { batch, imageTokens, textTokens, inner } = this.shape;
    const row = inner * 4;
    const text = this.owned.add(this.ctx.pool.tensor([batch, textTokens, inner]));
    const image = this.owned.add(this.ctx.pool.tensor([batch, imageTokens, inner]));
    for (let b = 0; b < batch; b++) {
      const base = b * (textTokens + imageTokens) * row;
      this.#commands.push(
        copyCommand("flux text rows", joint, text, {
          srcOffset: base,
          dstOffset: b * textTokens * row,
          bytes: textTokens * row,
        }),
        copyCommand("flux image rows", joint, image, {
          srcOffset: base + textTokens * row,
          dstOffset: b * imageTokens * row,
          bytes: imageTokens * row,
        }),
      );
    }
    return { text, image };
  }
}

interface View {
  tensor: Tensor;
  offset: number;
  rowStride: number;
}
