// One tiny case per kernel family (every shader in shaders/ but the bench's *_naive baselines), each against
// its CPU reference in src/ref/. Sizes are a few hundred values, odd where the kernel tiles, and use the
// embedded DiT's head dim (32) and hidden size (128) where a pipeline's code depends on them, so that most
// pipelines compiled here are the ones the model needs anyway. Inputs lie in [-1, 1).
import { GATES, similar } from "../cache/decision.ts";
import { gpuCacheDecision } from "../cache/kernels/cache_decision.ts";
import { gpuPruneDecision } from "../cache/kernels/prune_decision.ts";
import { wholeListDecision } from "../cache/kernels/whole_list_decision.ts";
import { TeaCacheRule } from "../cache/teacache.ts";
import type { PruneOptions } from "../cache/prune_decision.ts";
import { copyCommand, type Dispatch, disposeDispatches, isDispatch } from "../gpu/kernel.ts";
import { flashAttention } from "../ops/attention.ts";
import { axpy } from "../ops/axpy.ts";
import { channelAffine } from "../ops/channel_affine.ts";
import { channelRmsNorm } from "../ops/channel_rms_norm.ts";
import { conv2d } from "../ops/conv2d.ts";
import { causalConv3d, type CausalConv3dGeometry } from "../ops/conv3d.ts";
import { copyAsDispatch } from "../ops/copy.ts";
import { groupNorm } from "../ops/group_norm.ts";
import { embeddingLookup, uploadLabels } from "../ops/embedding_lookup.ts";
import { linear } from "../ops/linear.ts";
import { gatedResidual } from "../ops/modulate.ts";
import { layerNormModulate, rmsNormInPlace } from "../ops/norm.ts";
import { im2col, type Im2colGeometry } from "../ops/patch.ts";
import { relativePositionBias } from "../ops/relative_position_bias.ts";
import { residualDiff } from "../ops/residual_diff.ts";
import { rope, type RopeAxes, ropeTable } from "../ops/rope.ts";
import { samplerStep, type SamplerStepOptions } from "../ops/sampler_step.ts";
import { snapshotWindow } from "../ops/snapshot_window.ts";
import { timestepEmbedding, type TimestepEmbeddingOptions } from "../ops/timestep_embedding.ts";
import * as attentionRef from "../ref/attention.ts";
import * as axpyRef from "../ref/axpy.ts";
import * as channelAffineRef from "../ref/channel_affine.ts";
import * as channelRmsNormRef from "../ref/channel_rms_norm.ts";
import * as conv2dRef from "../ref/conv2d.ts";
import * as conv3dRef from "../ref/conv3d.ts";
import * as groupNormRef from "../ref/group_norm.ts";
import * as embeddingLookupRef from "../ref/embedding_lookup.ts";
import * as linearRef from "../ref/linear.ts";
import * as modulateRef from "../ref/modulate.ts";
import * as normRef from "../ref/norm.ts";
import * as patchRef from "../ref/patch.ts";
import * as relativePositionBiasRef from "../ref/relative_position_bias.ts";
import * as residualDiffRef from "../ref/residual_diff.ts";
import * as ropeRef from "../ref/rope.ts";
import * as samplerRef from "../ref/sampler_step.ts";
import * as snapshotWindowRef from "../ref/snapshot_window.ts";
import * as timestepRef from "../ref/timestep_embedding.ts";
import { type SelfCheckCase, selfCheckCase } from "./case.ts";

/** q, k, v of a fused qkv [1, 7, 3*H*D] at head dim 32 (7 tokens: not a multiple of any tile). */
const ATTENTION = { batch: 1, heads: 2, headDim: 32 };
const QKV_WIDTH = 3 * ATTENTION.heads * ATTENTION.headDim;
const qkvViews = (offsets: number[]) =>
  offsets.map((i) => ({ offset: i * QKV_WIDTH / 3, rowStride: QKV_WIDTH }));

/** A text encoder's masked single stream: CLIP's causal rows and T5's score bias, in one tiny kernel. */
const MASKED_ATTENTION = { batch: 1, heads: 2, headDim: 8 };
const MASKED_WIDTH = 3 * MASKED_ATTENTION.heads * MASKED_ATTENTION.headDim;
const maskedViews = [0, 1, 2].map((i) => ({ offset: i * MASKED_WIDTH / 3, rowStride: MASKED_WIDTH }));

/** Buckets of the 5 key - query offsets of 3 tokens, not symmetric; the last of the 3 keys is padding. */
const BIAS_BUCKETS = Uint32Array.of(0, 3, 1, 2, 3);
const BIAS_KEYS = 2;

const ROPE_AXES: RopeAxes = { axesDim: [4, 6, 6], theta: 10000 };
/** 5 tokens x 3 axes: distinct positions on every axis, angles up to 14 rad. */
const ROPE_IDS = Float32Array.from({ length: 15 }, (_, i) => i);
const ROPE_DIMS = { batch: 1, heads: 2, headDim: 16 };

const TIMESTEP: TimestepEmbeddingOptions = {
  dim: 32,
  flipSinToCos: true,
  downscaleFreqShift: 0,
  scale: 1000,
  maxPeriod: 10000,
};

const LABELS = [3, 10, 0];
const IM2COL: Im2colGeometry = {
  batch: 2,
  channels: 3,
  height: 7,
  width: 6,
  kernel: 3,
  stride: 2,
  padding: 1,
  layout: "nchw",
};
const CONV2D = {
  batch: 1,
  channels: 3,
  height: 3,
  width: 5,
  outChannels: 4,
  kernel: 3,
  padding: 1,
  upsample: 2,
};
const CONV3D: CausalConv3dGeometry = {
  frames: 2,
  batch: 2,
  channels: 3,
  height: 3,
  width: 4,
  outChannels: 4,
  kernel: 3,
  temporalKernel: 3,
  padding: 1,
  split: 1,
};
const AFFINE_DIVISORS = Float32Array.of(0.5, 1.7, 2.3);

/**
 * A clipped data prediction, a corrector over the last sample and two earlier x0s (slots 1 and 0 of the ring at
 * step 2), those x0s again, noise and guidance: every term of the update.
 */
const SAMPLER = {
  x0: { sample: 1.2, model: -0.7, clip: 1 },
  corrector: { last: 0.8, x0: 0.3, history: [-0.4, 0.2] },
  next: { sample: 0.3, x0: 0.6, history: [-0.2, 0.1], model: 0.1, noise: 0.3 },
  guidance: 3.5,
};
const PRUNE: PruneOptions = {
  blocks: 1,
  Fn: 0,
  Bn: 0,
  non_prune_blocks_ids: [],
  residual_diff_threshold: 0.5,
  max_warmup_steps: 0,
  warmup_interval: 1,
  max_pruned_steps: -1,
  enable_dynamic_prune_threshold: false,
  dynamic_prune_threshold_relax_ratio: 1.25,
  max_dynamic_prune_threshold: 1,
  residual_cache_update_interval: 1,
};
const DECISION = {
  residual_diff_threshold: 0.5,
  max_cached_steps: -1,
  max_continuous_cached_steps: -1,
  max_accumulated_residual_diff: null,
};

const TEACACHE_CHECK = { rule: "teacache" as const, thresh: 0.5, ret_steps: 1, coefficients: [1, 0] };
/** [items, slots], a 0 among them: weight-0 slots are not read. */
const SNAPSHOT_WEIGHTS = Float64Array.of(0.5, -1, 0, 2, 0.25, 1);

export const SELF_CHECK_CASES: SelfCheckCase[] = [
  // Sums of ~3000 values of O(1) in an fp32 tree: relative error ~1e-6 on ratios of O(1).
  selfCheckCase({
    kernel: "residual_diff",
    inputs: { a: [2, 49, 32], b: [2, 49, 32] },
    build: (ctx, t) => {
      const op = residualDiff(ctx, t.a, t.b, { samples: 2 });
      return { ...op, out: op.result };
    },
    reference: (v) => residualDiffRef.residualDiff(v.a, v.b, 32, { samples: 2 }),
    tolerance: 1e-5,
  }),
  // x [2, 5, 16] W [24, 16], out += gate * gelu_tanh(x W^T + b): 16 products of |.| < 1 per output round by
  // ~16 * 2^-24 * 4, tanh by a few ulp; a dropped term, gate or bias is off by > 1e-2.
  selfCheckCase({
    kernel: "linear gelu_tanh, gated accumulate",
    inputs: { x: [2, 5, 16], w: [24, 16], bias: [24], out: [2, 5, 24], mod: [2, 3 * 24] },
    build: (ctx, t) =>
      linear(ctx, t.x, t.w, {
        bias: t.bias,
        activation: "gelu_tanh",
        out: { tensor: t.out },
        gate: { tensor: t.mod, offset: 2 * 24, stride: 3 * 24, rowsPerGate: 5 },
      }),
    reference: (v) =>
      linearRef.linear(v.x, v.w, { rows: 10, cols: 24, depth: 16 }, {
        bias: v.bias,
        activation: "gelu_tanh",
        accumulateOnto: v.out,
        gate: { values: v.mod, offset: 2 * 24, stride: 3 * 24, rowsPerGate: 5 },
      }),
    tolerance: 2e-5,
  }),
  // x [2, 5, 16] W [24, 16]: quick_gelu(x W^T + b) * y elementwise (T5's gated feed-forward path with CLIP's
  // activation): 16 products of |.| < 1 and an exp, then one product, as the case above.
  selfCheckCase({
    kernel: "linear quick_gelu, times a tensor",
    inputs: { x: [2, 5, 16], w: [24, 16], bias: [24], y: [2, 5, 24] },
    build: (ctx, t) => linear(ctx, t.x, t.w, { bias: t.bias, activation: "quick_gelu", multiply: t.y }),
    reference: (v) =>
      linearRef.linear(v.x, v.w, { rows: 10, cols: 24, depth: 16 }, {
        bias: v.bias,
        activation: "quick_gelu",
        gate: { values: v.y, offset: 0, stride: 24, rowsPerGate: 1 },
      }),
    tolerance: 2e-5,
  }),
  // PyTorch's erf GELU through the erfc approximation (fractional error < 1.2e-7) on outputs |.| < ~4.
  selfCheckCase({
    kernel: "linear gelu_erf",
    inputs: { x: [2, 5, 16], w: [24, 16] },
    build: (ctx, t) => linear(ctx, t.x, t.w, { activation: "gelu_erf" }),
    reference: (v) =>
      linearRef.linear(v.x, v.w, { rows: 10, cols: 24, depth: 16 }, { activation: "gelu_erf" }),
    tolerance: 2e-5,
  }),
  // Online against two-pass softmax over 7 keys of |score| < 6: a few ulp of outputs |.| < 1.
  selfCheckCase({
    kernel: "flash_attention",
    inputs: { qkv: [1, 7, QKV_WIDTH] },
    build: (ctx, t) => {
      const [q, k, v] = qkvViews([0, 1, 2]).map((view) => ({ tensor: t.qkv, ...view }));
      return flashAttention(ctx, { q, k, v, tokens: 7 }, ATTENTION);
    },
    reference: (v) => {
      const [q, k, vv] = qkvViews([0, 1, 2]).map((view) => ({ data: v.qkv, ...view }));
      return attentionRef.flashAttention({ q, k, v: vv, tokens: 7 }, ATTENTION);
    },
    tolerance: 1e-5,
  }),
  // Causal with a score bias, 7 tokens at head dim 8: scores |.| < 4, masked keys weigh exactly 0.
  selfCheckCase({
    kernel: "flash_attention causal, score bias",
    inputs: { qkv: [1, 7, MASKED_WIDTH], bias: [MASKED_ATTENTION.heads, 7, 7] },
    build: (ctx, t) => {
      const [q, k, v] = maskedViews.map((view) => ({ tensor: t.qkv, ...view }));
      return flashAttention(ctx, { q, k, v, tokens: 7 }, MASKED_ATTENTION, {
        causal: true,
        scoreBias: t.bias,
      });
    },
    reference: (v) => {
      const [q, k, vv] = maskedViews.map((view) => ({ data: v.qkv, ...view }));
      return attentionRef.flashAttention({ q, k, v: vv, tokens: 7 }, MASKED_ATTENTION, {
        causal: true,
        scoreBias: v.bias,
      });
    },
    tolerance: 1e-5,
  }),
  // Rows of 128: mean and variance to ~1e-6 relative, outputs |.| < ~5 after (1 + scale) and shift.
  selfCheckCase({
    kernel: "layer_norm_modulate",
    inputs: { x: [2, 5, 128], mod: [2, 6 * 128] },
    build: (ctx, t) => layerNormModulate(ctx, t.x, t.mod, { shift: 0, scale: 1 }),
    reference: (v) => normRef.layerNormModulate(v.x, [2, 5, 128], v.mod, { shift: 0, scale: 1 }),
    tolerance: 3e-5,
  }),
  // k of a fused qkv, in place: rows of 32, outputs |.| < ~2; q and v must come back untouched.
  selfCheckCase({
    kernel: "rms_norm_in_place",
    inputs: { qkv: [2, 5, QKV_WIDTH], weight: [ATTENTION.headDim] },
    build: (ctx, t) => {
      const [k] = qkvViews([1]);
      return rmsNormInPlace(ctx, { tensor: t.qkv, ...k }, { tokens: 10, ...ATTENTION }, { weight: t.weight });
    },
    reference: (v) =>
      normRef.rmsNormInPlace(v.qkv, qkvViews([1])[0], { tokens: 10, ...ATTENTION }, { weight: v.weight }),
    tolerance: 1e-5,
  }),
  // Two products and a sum per output of |x| < 1, with cos/sin rounded once to f32: ~4e-7.
  selfCheckCase({
    kernel: "rope",
    inputs: { qkv: [1, 5, 3 * 2 * 16] },
    build: (ctx, t) => {
      const table = ropeTable(ctx, ROPE_IDS, [5, 3], ROPE_AXES);
      const op = rope(ctx, [{ tensor: t.qkv, offset: 32, rowStride: 96 }], table, ROPE_DIMS);
      const release = () => {
        op.release();
        table.release();
      };
      return { dispatches: op.dispatches, out: t.qkv, release };
    },
    reference: (v) => ropeRef.rope(v.qkv, { offset: 32, rowStride: 96 }, ROPE_IDS, ROPE_AXES, ROPE_DIMS),
    tolerance: 2e-6,
  }),
  // Arguments up to 1000 rad carry two f32 roundings: |d arg| <= 1.2e-4 (see tests/gpu/embedding_test.ts).
  selfCheckCase({
    kernel: "timestep_embedding",
    inputs: { t: [3] },
    build: (ctx, t) => timestepEmbedding(ctx, t.t, TIMESTEP),
    reference: (v) => timestepRef.timestepEmbedding(v.t, TIMESTEP),
    tolerance: 2e-4,
  }),
  // A gather added onto out with one f32 rounding, as the reference rounds: exact.
  selfCheckCase({
    kernel: "embedding_lookup",
    inputs: { table: [11, 16], out: [3, 16] },
    build: (ctx, t) => {
      const labels = uploadLabels(ctx, LABELS, 11);
      const dispatch = embeddingLookup(ctx, t.table, labels, t.out, { accumulate: true });
      const release = () => {
        disposeDispatches([dispatch]);
        labels.release();
      };
      return { dispatches: [dispatch], out: t.out, release };
    },
    reference: (v) => embeddingLookupRef.embeddingLookup(v.table, 16, LABELS, v.out),
    tolerance: 0,
  }),
  // T5's score bias gathered from a [buckets, heads] table, the padding key masked: exact.
  selfCheckCase({
    kernel: "relative_position_bias",
    inputs: { table: [4, 2] },
    build: (ctx, t) => {
      const bucket = ctx.pool.upload(BIAS_BUCKETS, [BIAS_BUCKETS.length]);
      const keys = ctx.pool.upload(Uint32Array.of(BIAS_KEYS), [1]);
      const out = ctx.pool.tensor([2, 3, 3]);
      const dispatch = relativePositionBias(ctx, t.table, bucket, keys, out);
      const release = () => {
        disposeDispatches([dispatch]);
        for (const x of [bucket, keys, out]) x.release();
      };
      return { dispatches: [dispatch], out, release };
    },
    reference: (v) => relativePositionBiasRef.relativePositionBias(v.table, 2, BIAS_BUCKETS, BIAS_KEYS),
    tolerance: 0,
  }),
  // A gather with zero padding: exact.
  selfCheckCase({
    kernel: "im2col",
    inputs: { x: [2, 3, 7, 6] },
    build: (ctx, t) => im2col(ctx, t.x, IM2COL),
    reference: (v) => patchRef.im2col(v.x, IM2COL),
    tolerance: 0,
  }),
  // Guided: |g (m_c - m_u)| < 7, a few roundings of it (~4e-7 each) against one of the float64 reference.
  selfCheckCase({
    kernel: "sampler_step",
    inputs: {
      x: [2, 1, 4, 5],
      m: [4, 2, 4, 5],
      noise: [2, 1, 4, 5],
      ring: [2, 2, 1, 4, 5],
      last: [2, 1, 4, 5],
    },
    build: (ctx, t) => {
      const history = { ring: t.ring, step: 2 };
      const options: SamplerStepOptions = { ...SAMPLER, noise: t.noise, history, last: t.last };
      return { ...samplerStep(ctx, t.x, t.m, options), out: t.x };
    },
    reference: (v) =>
      samplerRef.samplerStep(v.x, v.m, {
        ...SAMPLER,
        noise: v.noise,
        history: [v.ring.subarray(40), v.ring.subarray(0, 40)],
        last: v.last,
        batch: 2,
      }).x,
    tolerance: 1e-5,
  }),
  // 3x3 over 3 channels of |.| < 1 with nearest x2 upsampling and a bias: 28 terms, ~1e-7 each rounding.
  selfCheckCase({
    kernel: "conv2d",
    inputs: { x: [1, 3, 3, 5], w: [4, 3, 3, 3], bias: [4] },
    build: (ctx, t) => conv2d(ctx, t.x, t.w, { padding: 1, upsample: 2, bias: t.bias }),
    reference: (v) => conv2dRef.conv2d(v.x, v.w, CONV2D, v.bias),
    tolerance: 1e-5,
  }),
  // Normalised values ~1, the affine and SiLU after: f32 statistics against float64 ones.
  selfCheckCase({
    kernel: "group_norm",
    inputs: { x: [2, 6, 3, 4], weight: [6], bias: [6] },
    build: (ctx, t) =>
      groupNorm(ctx, t.x, { groups: 3, eps: 1e-6, weight: t.weight, bias: t.bias, silu: true }),
    reference: (v) =>
      groupNormRef.groupNorm(v.x, { batch: 2, channels: 6, groups: 3, eps: 1e-6 }, v.weight, v.bias, true),
    tolerance: 1e-5,
  }),
  // Wan's causal 3x3x3 conv over [history, x], two samples per frame: 81 products of |.| < 1 per output.
  selfCheckCase({
    kernel: "conv3d",
    inputs: { x: [2, 2, 3, 3, 4], history: [2, 2, 3, 3, 4], w: [4, 3, 3, 3, 3], bias: [4] },
    build: (ctx, t) => causalConv3d(ctx, t.x, t.w, { padding: 1, history: t.history, bias: t.bias }),
    reference: (v) => conv3dRef.causalConv3d(v.x, v.w, CONV3D, v.history, v.bias),
    tolerance: 1e-5,
  }),
  // WanRMS_norm + SiLU: normalised values ~1 from an f32 sum of 6 squares.
  selfCheckCase({
    kernel: "channel_rms_norm",
    inputs: { x: [2, 6, 3, 4], gamma: [6] },
    build: (ctx, t) => channelRmsNorm(ctx, t.x, { gamma: t.gamma, silu: true }),
    reference: (v) =>
      channelRmsNormRef.channelRmsNorm(
        v.x,
        { images: 2, channels: 6, spatial: 12, eps: 1e-12 },
        v.gamma,
        undefined,
        true,
      ),
    tolerance: 1e-5,
  }),
  // WanPipeline's de-normalisation: one division (by divisors away from 0) and one addition per value.
  selfCheckCase({
    kernel: "channel_affine",
    inputs: { x: [2, 3, 2, 5], shift: [3] },
    build: (ctx, t) => {
      const divisor = ctx.pool.upload(AFFINE_DIVISORS, [3]);
      const op = channelAffine(ctx, t.x, { divisor, shift: t.shift });
      return { ...op, release: () => (op.release(), divisor.release()) };
    },
    reference: (v) => channelAffineRef.channelAffine(v.x, 3, 10, AFFINE_DIVISORS, v.shift),
    tolerance: 1e-6,
  }),
  // y - x of |.| < 1: the sum rounds once, like the reference.
  selfCheckCase({
    kernel: "axpy",
    inputs: { x: [3, 5, 8], y: [3, 5, 8] },
    build: (ctx, t) => axpy(ctx, t.x, t.y, { alpha: -1 }),
    reference: (v) => axpyRef.axpy(v.x, v.y, -1),
    tolerance: 1e-6,
  }),
  // Rows 1-2 of a [3, 10] tensor over the whole of a [2, 10] one, at a 10-float offset (the scalar path): exact.
  selfCheckCase({
    kernel: "copy",
    inputs: { src: [3, 10], dst: [2, 10] },
    build: (ctx, t) => ({
      ...copyAsDispatch(ctx, copyCommand("rows 1-2", t.src, t.dst, { srcOffset: 40, bytes: 80 })),
      out: t.dst,
    }),
    reference: (v) => v.src.slice(10),
    tolerance: 0,
  }),
  // x + gate * y in place, |.| < 2: one or two roundings.
  selfCheckCase({
    kernel: "gated_residual",
    inputs: { x: [2, 5, 16], y: [2, 5, 16], mod: [2, 3 * 16] },
    build: (ctx, t) => gatedResidual(ctx, t.x, t.y, t.mod, { gate: 2 }),
    reference: (v) => modulateRef.gatedResidual(v.x, v.y, [2, 5, 16], v.mod, { gate: 2 }),
    tolerance: 1e-6,
  }),
  // The decision's log for one GPU-decided step: exact (a compare and copies of the diff).
  selfCheckCase({
    kernel: "cache_decision",
    inputs: { diff: [1] },
    build: (ctx, t) => {
      const op = gpuCacheDecision(ctx, t.diff, [], 1, DECISION);
      op.setStep(0, null);
      return { dispatches: op.commands.filter(isDispatch), out: op.state, release: () => op.release() };
    },
    // Counters (cached steps, consecutive, accumulated diff, last computed step, history entries, this step
    // cached, this step, 1 unused), then the step's log (cached, diff, gate, B blocks replayed).
    reference: (v) => {
      const d = v.diff[0];
      const cached = Number(similar(d, DECISION.residual_diff_threshold));
      const [last, entries] = cached ? [-1, 0] : [0, 1];
      const gate = GATES.indexOf(cached ? "similar" : "not_similar");
      return [cached, cached, d, last, entries, cached, 0, 0, cached, d, gate, 0];
    },
    tolerance: 0,
  }),
  // One prunable block's decision and log: exact (a compare and copies of the diff).
  selfCheckCase({
    kernel: "prune_decision",
    inputs: { diff: [1] },
    build: (ctx, t) => {
      const op = gpuPruneDecision(ctx, [{ diff: t.diff, slots: [] }], 1, PRUNE);
      op.setStep(0, { forced: false, refresh: true });
      return {
        dispatches: op.blocks[0]!.commands.filter(isDispatch),
        out: op.state,
        release: () => op.release(),
      };
    },
    // Counters (pruned steps, pruned this step, sum and count of positive diffs), the block's history (last
    // stored step, TaylorSeer entries: it ran and stored unless pruned), then its log (flag, diff).
    reference: (v) => {
      const d = v.diff[0];
      const pruned = Number(similar(d, PRUNE.residual_diff_threshold));
      const [last, entries] = pruned ? [-1, 0] : [0, 1];
      return [0, pruned, Math.max(d, 0), Number(d > 0), last, entries, pruned, d];
    },
    tolerance: 0,
  }),
  // TeaCache's decision of one step from its measure (pair 0 of the step slot): exact but for the f32 ratio.
  selfCheckCase({
    kernel: "whole_list_decision",
    inputs: { measures: [3, 2, 2] },
    build: (ctx, t) => {
      const op = wholeListDecision(ctx, t.measures, [], 3, TEACACHE_CHECK);
      op.setStep(1);
      return { dispatches: [op.command as Dispatch], out: op.state, release: () => op.release() };
    },
    // Counters (accumulated, computed steps, rate none, output mean none, unread, 3 unused), then the log of
    // steps 0 (untouched), 1 (cached, the accumulated estimate, gate) and 2 (untouched).
    reference: (v) => {
      const rule = new TeaCacheRule({ ...TEACACHE_CHECK, rel_l1_thresh: TEACACHE_CHECK.thresh, steps: 3 });
      const d = rule.decide(1, [v.measures[0], v.measures[1]]);
      const gate = GATES.indexOf(d.gate);
      const accumulated = d.cached ? d.diff! : 0;
      return [
        accumulated,
        d.cached ? 0 : 1,
        -1,
        -1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        Number(d.cached),
        d.diff!,
        gate,
        0,
        0,
        0,
      ];
    },
    // The rule divides in f64 on the host, in f32 on the GPU.
    tolerance: 1e-5,
  }),
  // DMD's forecast: a weighted sum of the ring's snapshots per batch item, added to the target.
  selfCheckCase({
    kernel: "snapshot_window",
    inputs: { snapshots: [3, 2, 8], target: [2, 8] },
    build: (ctx, t) => {
      const window = snapshotWindow(ctx, t.target, 3, t.target, "add");
      const fill = axpy(ctx, t.snapshots, t.snapshots, { alpha: 1, beta: 0, out: window.ring });
      return {
        dispatches: [...fill.dispatches, ...window.combine(SNAPSHOT_WEIGHTS)],
        out: t.target,
        release: () => {
          fill.release();
          window.release();
        },
      };
    },
    reference: (v) =>
      snapshotWindowRef.snapshotCombination(
        v.snapshots,
        { slots: 3, items: 2, size: 8 },
        SNAPSHOT_WEIGHTS,
        v.target,
      ),
    tolerance: 1e-5,
  }),
];
