// DBPrune's GPU decision against its CPU reference (PruneDecision): the same pruned blocks, judged diffs and
// max_pruned_steps stops, step by step, and the indirect arguments run exactly the chosen branch per block.
import assert from "node:assert/strict";
import { PruneDecision, type PruneOptions } from "../../src/cache/prune_decision.ts";
import { axpy } from "../../src/ops/axpy.ts";
import { gpuPruneDecision } from "../../src/cache/kernels/prune_decision.ts";
import { branchSlots } from "../../src/cache/kernels/conditional_dispatch.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { gpuTest } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

const BASE: PruneOptions = {
  blocks: 6,
  Fn: 1,
  Bn: 1,
  non_prune_blocks_ids: [3],
  residual_diff_threshold: 0.1,
  max_warmup_steps: 2,
  warmup_interval: 1,
  max_pruned_steps: -1,
  enable_dynamic_prune_threshold: false,
  dynamic_prune_threshold_relax_ratio: 1.25,
  max_dynamic_prune_threshold: 0.2,
  residual_cache_update_interval: 1,
};
const STEPS = 12;
const CASES: Record<string, Partial<PruneOptions>> = {
  "threshold only": {},
  "dynamic threshold": { enable_dynamic_prune_threshold: true },
  "dynamic threshold, high cap": { enable_dynamic_prune_threshold: true, max_dynamic_prune_threshold: 1 },
  "max_pruned_steps 3": { max_pruned_steps: 3 },
};

for (const [name, partial] of Object.entries(CASES)) {
  gpuTest(`GPU prune decision matches PruneDecision: ${name}`, async (ctx) => {
    const options = { ...BASE, ...partial };
    const reference = new PruneDecision(options);
    const one = ctx.pool.upload(Float32Array.of(1), [1]);
    const counter = () => ctx.pool.upload(Float32Array.of(0), [1]);
    const blocks = Array.from({ length: options.blocks }, (_, i) => {
      if (!reference.prunable(i)) return null;
      const [ran, pruned] = [counter(), counter()];
      const ops = [
        axpy(ctx, one, ran, { alpha: 1, inPlace: true }),
        axpy(ctx, one, pruned, { alpha: 1, inPlace: true }),
      ];
      return { diff: ctx.pool.tensor([1]), ran, pruned, ops };
    });
    const op = gpuPruneDecision(
      ctx,
      blocks.map((b) =>
        b &&
        { diff: b.diff, slots: branchSlots({ compute: b.ops[0].dispatches, cached: b.ops[1].dispatches }) }
      ),
      STEPS,
      options,
    );
    const recorder = new StepRecorder(ctx.gpu);
    const expectedPruned = blocks.map(() => 0);
    for (let step = 0; step < STEPS; step++) {
      // Diffs around the threshold, |N(0,1)| * 0.09: about a quarter of the blocks prune.
      const diffs = randn(options.blocks, 70 + step).map((v) => Math.fround(Math.abs(v) * 0.09));
      const gate = reference.beginStep(step);
      // Warmup steps are forced: every block runs and nothing is judged.
      op.setStep(step, { forced: gate === "warmup", refresh: true });
      const expected = {
        pruned: blocks.map(() => false),
        diffs: blocks.map((): number | null => null),
        limited: gate === "max_pruned_steps",
      };
      blocks.forEach((b, i) => {
        if (!b) return;
        ctx.pool.write(b.diff, Float32Array.of(diffs[i]));
        const d = op.blocks[i]!;
        recorder.encode([...d.commands, ...d.slots]);
        if (gate !== null) return;
        expected.diffs[i] = diffs[i];
        expected.pruned[i] = reference.decideBlock(diffs[i]);
        expectedPruned[i] += Number(expected.pruned[i]);
      });
      reference.endStep();
      recorder.submit();
      const logged = op.decode(await recorder.read(op.state))[step];
      assert.deepEqual(logged, expected, `step ${step}`);
    }
    for (const [i, b] of blocks.entries()) {
      if (!b) continue;
      assert.deepEqual([...await recorder.read(b.pruned)], [expectedPruned[i]], `block ${i} replays`);
      assert.deepEqual(
        [...await recorder.read(b.ran)],
        [STEPS - expectedPruned[i]],
        `block ${i} runs`,
      );
      for (const o of b.ops) o.release();
      for (const t of [b.diff, b.ran, b.pruned]) t.release();
    }
    op.release();
    one.release();
  });
}
