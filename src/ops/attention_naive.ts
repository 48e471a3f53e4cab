// The three-kernel attention over a materialised [batch, heads, N, N] score tensor
// (shaders/attention_naive.wgsl): scores, a softmax per row, weighted sums. The baseline the bench measures
// flashAttention (src/ops/attention.ts) against; nothing else runs it.
import type { GpuContext } from "../gpu/context.ts";
import { bindKernel, type Dispatch, disposeDispatches, groups, packUniform } from "../gpu/kernel.ts";
import {
  type Attention,
  type AttentionDims,
  checkAllocation,
  checkDims,
  checkStream,
  type FlashAttentionOptions,
  type QkvViews,
} from "./attention.ts";

const NAIVE = "attention_naive";
const NAIVE_BINDINGS = ["read", "read", "read", "read_write", "read_write", "uniform"] as const;
/** Naive kernels: 16x16 invocations per workgroup (scores and weighted sums), 256 rows (softmax). */
const NAIVE_WG = 16;

/**
 * The same attention (one stream, no joint text) as three kernels over a materialised [batch, heads, N, N]
 * score tensor: the baseline flashAttention is benchmarked against.
 */
export function naiveAttention(
  ctx: GpuContext,
  views: QkvViews,
  dims: AttentionDims,
  options: Pick<FlashAttentionOptions, "scale"> = {},
): Attention {
  const scale = options.scale ?? 1 / Math.sqrt(dims.headDim);
  checkDims(NAIVE, dims, scale);
  checkStream(NAIVE, "", views, dims);
  const { batch, heads, headDim } = dims;
  const n = views.tokens;
  const outShape = [batch, n, heads * headDim];
  const scoresShape = [batch, heads, n, n];
  checkAllocation(ctx, NAIVE, "out", outShape);
  checkAllocation(ctx, NAIVE, "scores", scoresShape);

  const uniform = () =>
    packUniform([
      ["u32", n],
      ["u32", heads],
      ["u32", headDim],
      ...[views.q, views.k, views.v].flatMap((view): ["u32", number][] => [
        ["u32", view.offset],
        ["u32", view.rowStride],
      ]),
      ["f32", scale],
    ]);
  const stage = (entry: string) =>
    ctx.kernels.get({
      name: NAIVE,
      entry,
      bindings: NAIVE_BINDINGS,
      constants: { WG_X: NAIVE_WG, WG_Y: NAIVE_WG },
    });
  const scores = ctx.pool.tensor(scoresShape);
  const out = ctx.pool.tensor(outShape);
  const buffers = [views.q.tensor, views.k.tensor, views.v.tensor, scores, out];
  const dispatches: Dispatch[] = [];
  const release = () => {
    scores.release();
    out.release();
    disposeDispatches(dispatches);
  };
  try {
    const bh = batch * heads;
    dispatches.push(
      bindKernel(
        ctx.gpu,
        stage("scores"),
        buffers,
        [groups(n, NAIVE_WG), groups(n, NAIVE_WG), bh],
        uniform(),
      ),
      bindKernel(ctx.gpu, stage("softmax_rows"), buffers, [groups(n, NAIVE_WG * NAIVE_WG), 1, bh], uniform()),
      bindKernel(
        ctx.gpu,
        stage("weighted_sum"),
        buffers,
        [groups(headDim, NAIVE_WG), groups(n, NAIVE_WG), bh],
        uniform(),
      ),
    );
  } catch (e) {
    release();
    throw e;
  }
  return { dispatches, out, release };
}
