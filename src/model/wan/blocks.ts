// WanTransformerBlock as a dispatch list over the video-token stream `hidden` [B, N, D], updated in place; the
// text stream [B, Nt, D] is read only. Per block, with mod = scale_shift_table + timestep_proj [B, 6D]
// (shift, scale, gate of the self-attention, then of the feed-forward):
//   self-attention: norm1 (LayerNorm without affine) modulated, q/k/v, q and k RMS-normed over all heads
//     together (the full D), 3-D RoPE, attention, to_out gated into hidden;
//   cross-attention: norm2 (affine LayerNorm, or none without cross_attn_norm), q from the video tokens and
//     k, v from the text (both RMS-normed over D), no RoPE, to_out added to hidden;
//   feed-forward: norm3 modulated, GELU-tanh MLP gated into hidden, in row chunks when its hidden is too big
//     for one binding (src/model/wan/graph_plan.ts).
// The intermediate tensors are scratch shared by every block (blocks run one after another and none reads
// another's scratch): one set per graph, not per block, which is what lets 40 blocks of 32,760 tokens fit.
import type { GpuContext } from "../../gpu/context.ts";
import { type Command, copyCommand } from "../../gpu/kernel.ts";
import type { Owned } from "../../gpu/owned.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { crossAttention, flashAttention } from "../../ops/attention.ts";
import { type Activation, type GateView, linear } from "../../ops/linear.ts";
import { layerNorm, layerNormModulate, rmsNormInPlace } from "../../ops/norm.ts";
import { rope, type RopeTable } from "../../ops/rope.ts";
import type { RowView } from "../../ops/row_view.ts";
import type { ModelWeights } from "../model_weights.ts";
import type { WanTransformerConfig } from "./config.ts";

export interface WanBlockShape {
  batch: number;
  /** Video tokens per sample. */
  tokens: number;
  textTokens: number;
  inner: number;
  /** Rows of one feed-forward chunk (batch * tokens when unchunked, else a divisor of tokens). */
  ffnChunkRows: number;
}

interface Op {
  dispatches: Command[];
  release(): void;
}

const rows = (tensor: Tensor): RowView => ({ tensor, offset: 0, rowStride: tensor.shape[2] });

/** Builds block dispatch lists; the scratch and every op it makes are owned by the graph being built. */
export class WanBlockBuilder {
  readonly #commands: Command[] = [];
  /** The first block's adaLN-modulated input (TeaCache's probe). */
  firstImageNorm: { dispatches: Command[]; out: Tensor } | null = null;
  readonly #scratch: Record<"normed" | "q" | "k" | "v" | "attended" | "textK" | "textV", Tensor>;
  readonly #ffn: { input?: Tensor; hidden: Tensor };

  constructor(
    private readonly ctx: GpuContext,
    private readonly config: WanTransformerConfig,
    private readonly weights: ModelWeights,
    private readonly owned: Owned,
    private readonly shape: WanBlockShape,
    private readonly streams: { hidden: Tensor; text: Tensor },
    private readonly ropeTable: RopeTable,
  ) {
    const { batch, tokens, textTokens, inner, ffnChunkRows } = shape;
    const tensor = (dims: number[]) => owned.add(ctx.pool.tensor(dims));
    const video = () => tensor([batch, tokens, inner]);
    this.#scratch = {
      normed: video(),
      q: video(),
      k: video(),
      v: video(),
      attended: video(),
      textK: tensor([batch, textTokens, inner]),
      textV: tensor([batch, textTokens, inner]),
    };
    const chunked = ffnChunkRows < batch * tokens;
    this.#ffn = {
      input: chunked ? tensor([ffnChunkRows, inner]) : undefined,
      hidden: tensor(chunked ? [ffnChunkRows, config.ffn_dim] : [batch, tokens, config.ffn_dim]),
    };
  }

  /** blocks.{i}; mod [B, 6D] = its scale_shift_table + timestep_proj. */
  block(i: number, mod: Tensor): Command[] {
    const b = `blocks.${i}`;
    const { hidden, text } = this.streams;
    const s = this.#scratch;
    const { eps } = this.config;
    const { tokens, textTokens } = this.shape;
    const norm1 = layerNormModulate(this.ctx, hidden, mod, { shift: 0, scale: 1, eps, out: s.normed });
    this.#run(norm1);
    // TeaCache's probe: the scratch holds block 0's modulated input right after these dispatches.
    this.firstImageNorm ??= norm1;
    for (const name of ["q", "k", "v"] as const) this.#linear(s.normed, `${b}.attn1.to_${name}`, s[name]);
    this.#rmsNorm(s.q, `${b}.attn1.norm_q`);
    this.#rmsNorm(s.k, `${b}.attn1.norm_k`);
    const dims = {
      batch: this.shape.batch,
      heads: this.config.num_attention_heads,
      headDim: this.config.attention_head_dim,
    };
    this.#run(rope(this.ctx, [rows(s.q), rows(s.k)], this.ropeTable, dims));
    const views = { q: rows(s.q), k: rows(s.k), v: rows(s.v), tokens };
    this.#run(flashAttention(this.ctx, views, dims, { out: s.attended }));
    this.#linear(s.attended, `${b}.attn1.to_out.0`, hidden, { gate: this.#gate(mod, 2, 0, tokens) });

    let crossInput = hidden;
    if (this.config.cross_attn_norm) {
      const w = (p: string) => this.weights.get(`${b}.norm2.${p}`);
      this.#run(layerNorm(this.ctx, hidden, { weight: w("weight"), bias: w("bias"), eps, out: s.normed }));
      crossInput = s.normed;
    }
    this.#linear(crossInput, `${b}.attn2.to_q`, s.q);
    this.#linear(text, `${b}.attn2.to_k`, s.textK);
    this.#linear(text, `${b}.attn2.to_v`, s.textV);
    this.#rmsNorm(s.q, `${b}.attn2.norm_q`);
    this.#rmsNorm(s.textK, `${b}.attn2.norm_k`);
    this.#run(crossAttention(
      this.ctx,
      { q: rows(s.q), tokens },
      { k: rows(s.textK), v: rows(s.textV), tokens: textTokens },
      dims,
      { out: s.attended },
    ));
    this.#linear(s.attended, `${b}.attn2.to_out.0`, hidden, { accumulate: true });

    this.#run(layerNormModulate(this.ctx, hidden, mod, { shift: 3, scale: 4, eps, out: s.normed }));
    this.#feedForward(b, mod);
    return this.#commands.splice(0);
  }

  /**
   * hidden += c_gate * net.2(gelu_tanh(net.0.proj(normed))), whole or per chunk of rows: the chunk's rows of
   * normed copied out, its hidden, and net.2 gated into its rows of `hidden` with its sample's gate.
   */
  #feedForward(b: string, mod: Tensor): void {
    const { batch, tokens, inner, ffnChunkRows: chunk } = this.shape;
    const { normed } = this.#scratch;
    const { input, hidden: ffnHidden } = this.#ffn;
    const up = `${b}.ffn.net.0.proj`;
    const down = `${b}.ffn.net.2`;
    if (!input) {
      this.#linear(normed, up, ffnHidden, { activation: "gelu_tanh" });
      this.#linear(ffnHidden, down, this.streams.hidden, { gate: this.#gate(mod, 5, 0, tokens) });
      return;
    }
    const rowBytes = inner * 4;
    for (let first = 0; first < batch * tokens; first += chunk) {
      const sample = Math.floor(first / tokens);
      this.#commands.push(copyCommand("wan ffn rows", normed, input, {
        srcOffset: first * rowBytes,
        bytes: chunk * rowBytes,
      }));
      this.#linear(input, up, ffnHidden, { activation: "gelu_tanh" });
      this.#linear(ffnHidden, down, this.streams.hidden, {
        outOffset: first * inner,
        gate: this.#gate(mod, 5, sample, chunk),
      });
    }
  }

  /** Gate chunk `chunk` of mod [B, 6D] from sample `first` on, one vector per `rowsPerGate` output rows. */
  #gate(mod: Tensor, chunk: number, first: number, rowsPerGate: number): GateView {
    const d = this.shape.inner;
    return { tensor: mod, offset: (first * 6 + chunk) * d, stride: 6 * d, rowsPerGate };
  }

  #run(op: Op): void {
    this.owned.add(op);
    this.#commands.push(...op.dispatches);
  }

  /** RMSNorm over the whole row (all heads at once), in place, with `name`.weight. */
  #rmsNorm(x: Tensor, name: string): void {
    const [batch, tokens, inner] = x.shape;
    this.#run(rmsNormInPlace(this.ctx, rows(x), { tokens: batch * tokens, heads: 1, headDim: inner }, {
      weight: this.weights.get(`${name}.weight`),
      eps: this.config.eps,
    }));
  }

  /** x W^T + b of linear `name` into `out` (from element outOffset on): written, accumulated or gated. */
  #linear(
    x: Tensor,
    name: string,
    out: Tensor,
    o: { activation?: Activation; accumulate?: boolean; gate?: GateView; outOffset?: number } = {},
  ): void {
    this.#run(linear(this.ctx, x, this.weights.get(`${name}.weight`), {
      bias: this.weights.get(`${name}.bias`),
      activation: o.activation,
      out: { tensor: out, offset: o.outOffset ?? 0 },
      accumulate: o.accumulate,
      gate: o.gate,
    }));
  }
}
