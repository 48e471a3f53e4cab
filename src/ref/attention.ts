// CPU reference of src/ops/attention.ts: exact two-pass softmax attention in float64 (all scores of a query
// row first, then their max, exponentials and sum), so it shares no arithmetic order with the online softmax.
import type { AttentionDims } from "../ops/attention.ts";

/** A view over host data: element (b, n, h, d) at offset + (b*tokens + n)*rowStride + h*headDim + d. */
export interface HostView {
  data: Float32Array;
  offset: number;
  rowStride: number;
}

export interface HostQkv {
  q: HostView;
  k: HostView;
  v: HostView;
  tokens: number;
}

/** Rows [first, first + tokens) of the attended sequence; a query stream needs q, a key stream k and v. */
interface Stream {
  q?: HostView;
  k?: HostView;
  v?: HostView;
  tokens: number;
  first: number;
}

export interface HostAttentionOptions {
  scale?: number;
  text?: HostQkv;
  /** Row n attends keys j <= n of the attended sequence only. */
  causal?: boolean;
  /** [heads, N, N] (N = Nt + Ni) added to the scaled scores. */
  scoreBias?: ArrayLike<number>;
}

/**
 * softmax(q k^T * scale [+ scoreBias], causal) v -> [batch, Nt + Ni, heads * headDim]; with options.text the
 * attended sequence is the text tokens then the image tokens, in that order.
 */
export function flashAttention(
  image: HostQkv,
  dims: AttentionDims,
  options: HostAttentionOptions = {},
): Float32Array {
  const textTokens = options.text?.tokens ?? 0;
  // Each stream covers rows [first, first + tokens) of the concatenated sequence.
  const streams: Stream[] = [{ ...image, first: textTokens }];
  if (options.text) streams.unshift({ ...options.text, first: 0 });
  return attend(streams, streams, dims, options);
}

/** Cross-attention: the queries of one stream attend the keys and values of another -> [batch, Nq, H*D]. */
export function crossAttention(
  queries: { q: HostView; tokens: number },
  keys: { k: HostView; v: HostView; tokens: number },
  dims: AttentionDims,
  options: Pick<HostAttentionOptions, "scale"> = {},
): Float32Array {
  return attend([{ ...queries, first: 0 }], [{ ...keys, first: 0 }], dims, options);
}

/** Every query row of `queries` against every key of `keys`; the output rows follow the query streams. */
function attend(
  queries: Stream[],
  keys: Stream[],
  dims: AttentionDims,
  options: Omit<HostAttentionOptions, "text">,
): Float32Array {
  const { batch, heads, headDim } = dims;
  const { causal, scoreBias } = options;
  const scale = options.scale ?? 1 / Math.sqrt(headDim);
  const rows = queries.reduce((n, s) => n + s.tokens, 0);
  const total = keys.reduce((n, s) => n + s.tokens, 0);
  const at = (view: HostView, tokens: number, b: number, n: number, h: number) =>
    view.offset + (b * tokens + n) * view.rowStride + h * headDim;
  const out = new Float32Array(batch * rows * heads * headDim);
  const scores = new Float64Array(total);
  const acc = new Float64Array(headDim);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (const qs of queries) {
        const q = qs.q!;
        for (let i = 0; i < qs.tokens; i++) {
          const qi = at(q, qs.tokens, b, i, h);
          const row = qs.first + i;
          for (const ks of keys) {
            const k = ks.k!;
            for (let j = 0; j < ks.tokens; j++) {
              const kj = at(k, ks.tokens, b, j, h);
              const key = ks.first + j;
              let dot = 0;
              for (let d = 0; d < headDim; d++) dot += q.data[qi + d] * k.data[kj + d];
              const bias = scoreBias ? scoreBias[(h * total + row) * total + key] : 0;
              scores[key] = causal && key > row ? -Infinity : dot * scale + bias;
            }
          }
          const top = scores.reduce((a, s) => Math.max(a, s), -Infinity);
          let sum = 0;
          acc.fill(0);
          for (const vs of keys) {
            const v = vs.v!;
            for (let j = 0; j < vs.tokens; j++) {
              const weight = Math.exp(scores[vs.first + j] - top);
              sum += weight;
              const vj = at(v, vs.tokens, b, j, h);
              for (let d = 0; d < headDim; d++) acc[d] += weight * v.data[vj + d];
            }
          }
          const o = ((b * rows + row) * heads + h) * headDim;
          for (let d = 0; d < headDim; d++) out[o + d] = acc[d] / sum;
        }
      }
    }
  }
  return out;
}
