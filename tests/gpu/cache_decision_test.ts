// The GPU-side cache decision against its CPU reference (CacheDecision): the same gates, counters and
// measured diffs step by step, and the indirect arguments run exactly the chosen branch.
import assert from "node:assert/strict";
import { CacheDecision, type DecisionOptions, stepGate } from "../../src/cache/decision.ts";
import { scmMask } from "../../src/cache/scm.ts";
import { axpy } from "../../src/ops/axpy.ts";
import { gpuCacheDecision } from "../../src/cache/kernels/cache_decision.ts";
import { branchSlots } from "../../src/cache/kernels/conditional_dispatch.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { gpuTest } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

const BASE: DecisionOptions = {
  residual_diff_threshold: 0.1,
  max_warmup_steps: 2,
  warmup_interval: 1,
  max_cached_steps: -1,
  max_continuous_cached_steps: -1,
  max_accumulated_residual_diff: null,
  mask: null,
  steps_computation_policy: "dynamic",
};

const STEPS = 20;
const CASES: Record<string, Partial<DecisionOptions>> = {
  "threshold only": {},
  "max_cached_steps 3": { max_cached_steps: 3 },
  "max_continuous_cached_steps 2": { max_continuous_cached_steps: 2 },
  "max_accumulated_residual_diff 0.25": { max_accumulated_residual_diff: 0.25 },
  "threshold 0": { residual_diff_threshold: 0 },
  "warmup interval 3": { max_warmup_steps: 9, warmup_interval: 3 },
  "mask fast, dynamic": { mask: scmMask("fast", STEPS) },
  "mask fast, static": { mask: scmMask("fast", STEPS), steps_computation_policy: "static" },
  "no warmup": { max_warmup_steps: 0 },
};

for (const [name, partial] of Object.entries(CASES)) {
  gpuTest(`GPU cache decision matches CacheDecision: ${name}`, async (ctx) => {
    const options = { ...BASE, ...partial };
    // Diffs around the threshold: |N(0,1)| * 0.08 crosses 0.1 on about a fifth of the steps.
    const diffs = randn(STEPS, 40).map((v) => Math.abs(v) * 0.08);
    const diff = ctx.pool.tensor([1]);
    const [computedCount, cachedCount, one] = [[1], [1], [1]].map((s) =>
      ctx.pool.upload(new Float32Array(s).fill(0), s)
    );
    ctx.pool.write(one, Float32Array.of(1));
    const addCompute = axpy(ctx, one, computedCount, { alpha: 1, inPlace: true });
    const addCached = axpy(ctx, one, cachedCount, { alpha: 1, inPlace: true });
    const op = gpuCacheDecision(
      ctx,
      diff,
      branchSlots({ compute: addCompute.dispatches, cached: addCached.dispatches }),
      STEPS,
      options,
    );
    const reference = new CacheDecision(options);
    const recorder = new StepRecorder(ctx.gpu);
    const expected = [];
    for (let step = 0; step < STEPS; step++) {
      ctx.pool.write(diff, Float32Array.of(diffs[step]));
      op.setStep(step, stepGate(options, step, step > 0));
      recorder.encode([...op.commands, ...op.slots]);
      recorder.submit();
      const needs = reference.needsDiff(step);
      const measured = needs ? Math.fround(diffs[step]) : null;
      // No B block is judged here: none replays.
      expected.push({ ...reference.decide(step, measured), diff: measured, replayed: 0 });
    }
    const logged = op.decode(await recorder.read(op.state));
    assert.deepEqual(logged, expected);
    const cached = expected.filter((e) => e.cached).length;
    assert.deepEqual(
      [...await recorder.read(cachedCount)],
      [cached],
      "cached branch ran once per cached step",
    );
    assert.deepEqual([...await recorder.read(computedCount)], [STEPS - cached], "compute branch: the others");
    op.release();
    for (const o of [addCompute, addCached]) o.release();
    for (const t of [diff, computedCount, cachedCount, one]) t.release();
  });
}
