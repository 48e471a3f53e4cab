// DBPrune's rules without a GPU: the non-prune set, the step gates, the dynamic threshold worked by hand,
// and the residual refresh interval.
import assert from "node:assert/strict";
import { PruneDecision, type PruneOptions } from "../../src/cache/prune_decision.ts";

const BASE: PruneOptions = {
  blocks: 8,
  Fn: 2,
  Bn: 1,
  non_prune_blocks_ids: [4],
  residual_diff_threshold: 0.1,
  max_warmup_steps: 2,
  warmup_interval: 1,
  max_pruned_steps: -1,
  enable_dynamic_prune_threshold: false,
  dynamic_prune_threshold_relax_ratio: 1.25,
  max_dynamic_prune_threshold: 0.2,
  residual_cache_update_interval: 1,
};

Deno.test("prune decision: the first Fn, the last Bn and non_prune_blocks_ids are never prunable", () => {
  const d = new PruneDecision(BASE);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].filter((i) => d.prunable(i)), [2, 3, 5, 6]);
});

Deno.test("prune decision: warmup, then per-block; max_pruned_steps counts steps with a pruned block", () => {
  const d = new PruneDecision({ ...BASE, max_pruned_steps: 2 });
  const pruneOnce = (step: number) => {
    const gate = d.beginStep(step);
    if (gate === null) {
      assert.equal(d.decideBlock(0.05), true);
      assert.equal(d.decideBlock(0.5), false);
    }
    return [gate, d.endStep()];
  };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5].map(pruneOnce),
    [["warmup", 0], ["warmup", 0], [null, 1], [null, 1], ["max_pruned_steps", 0], ["max_pruned_steps", 0]],
  );
  assert.equal(d.prunedSteps, 2);
  assert.equal(new PruneDecision({ ...BASE, residual_diff_threshold: 0 }).beginStep(5), "threshold_off");
});

Deno.test("prune decision: the dynamic threshold relaxes to 1.25 x the mean positive diff, below the cap", () => {
  const d = new PruneDecision({ ...BASE, enable_dynamic_prune_threshold: true });
  d.beginStep(3);
  assert.equal(d.threshold(), 0.1, "no diff measured yet in this step");
  assert.equal(d.decideBlock(0.12), false);
  // mean 0.12 -> relaxed 0.15 < cap 0.2 -> max(0.15, 0.1)
  assert.ok(Math.abs(d.threshold() - 0.15) < 1e-12);
  assert.equal(d.decideBlock(0.14), true, "0.14 would not prune at the plain 0.1");
  // mean(0.12, 0.14) = 0.13 -> 0.1625; a zero diff is not positive and leaves the mean alone
  assert.equal(d.decideBlock(0), true);
  assert.ok(Math.abs(d.threshold() - 0.1625) < 1e-12);
  assert.equal(d.decideBlock(0.3), false);
  // mean(0.12, 0.14, 0.3) = 0.18667 -> relaxed 0.2333 >= cap 0.2 -> back to 0.1
  assert.equal(d.threshold(), 0.1);
  assert.equal(d.endStep(), 2);
  d.beginStep(4);
  assert.equal(d.threshold(), 0.1, "each step starts from the plain threshold");
  // below the plain threshold the relaxed one never tightens it
  const low = new PruneDecision({ ...BASE, enable_dynamic_prune_threshold: true });
  low.beginStep(3);
  low.decideBlock(0.01);
  assert.equal(low.threshold(), 0.1);
});

Deno.test("prune decision: a block stores when it has nothing yet or on every interval-th step", () => {
  const d = new PruneDecision({ ...BASE, residual_cache_update_interval: 3 });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((s) => d.shouldStore(s, true)), [
    true,
    false,
    false,
    true,
    false,
    false,
    true,
  ]);
  assert.equal(d.shouldStore(4, false), true);
});
