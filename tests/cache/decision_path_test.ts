// The adapter-aware choice of the decision path (src/cache/decision_path.ts): the rule on given costs, the
// costs measured on this adapter (once per context), and a strategy without an explicit path taking the
// rule's choice for its block list.
import assert from "node:assert/strict";
import { DbCache } from "../../src/cache/dbcache.ts";
import {
  chooseDecisionPath,
  gpuDecidedDispatches,
  knownDecisionCosts,
  measureDecisionCosts,
} from "../../src/cache/decision_path.ts";
import { resolveCacheOptions, type ResolvedDbCache } from "../../src/cache/options.ts";
import { fakeBlocks } from "../support/fake_blocks.ts";
import { gpuTest } from "../support/gpu.ts";
import { drive, randomScripts, SHAPE } from "./conformance.ts";

Deno.test("decision path rule: the GPU path unless its conditional dispatches cost more than the readbacks", () => {
  // 1/64 ms: exact in binary, so the crossover at 768 dispatches per readback is exact too.
  const costs = { emptyDispatchMs: 1 / 64, indirectExtraMs: 1 / 128, readbackMs: 12 };
  assert.equal(chooseDecisionPath(null, { emptyDispatches: 1e6, readbacks: 1 }), "gpu", "costs unknown");
  assert.equal(chooseDecisionPath(costs, { emptyDispatches: 1e6, readbacks: 0 }), "gpu", "nothing to read");
  assert.equal(
    chooseDecisionPath(costs, { emptyDispatches: 768, readbacks: 1 }),
    "gpu",
    "12 ms against 12 ms",
  );
  assert.equal(chooseDecisionPath(costs, { emptyDispatches: 769, readbacks: 1 }), "readback");
  assert.equal(chooseDecisionPath(costs, { emptyDispatches: 1536, readbacks: 2 }), "gpu", "per readback");
  const slow = { ...costs, indirectExtraMs: 1 / 32 };
  assert.equal(
    chooseDecisionPath(slow, { emptyDispatches: 500, indirectDispatches: 500, readbacks: 1 }),
    "readback",
  );
  assert.equal(
    chooseDecisionPath(slow, { emptyDispatches: 384, indirectDispatches: 384, readbacks: 1 }),
    "gpu",
  );
  assert.equal(gpuDecidedDispatches(costs), 768);
  assert.equal(gpuDecidedDispatches(slow), 384, "the dearer of an empty and an indirect dispatch");
  const tiny = { emptyDispatchMs: 1e-9, indirectExtraMs: 0, readbackMs: 12 };
  assert.equal(gpuDecidedDispatches(tiny), 12e6, "a floor under 0");
});

gpuTest(
  "decision costs: measured once per context; a strategy without a path takes the rule's",
  async (ctx) => {
    const costs = await measureDecisionCosts(ctx);
    for (const [name, ms] of Object.entries(costs)) {
      assert.ok(Number.isFinite(ms) && ms > 0 && ms < 1000, `${name}: ${ms} ms`);
    }
    assert.equal(await measureDecisionCosts(ctx), costs, "the first measure is kept");
    assert.equal(knownDecisionCosts(ctx), costs);
    const blocks = 5;
    const options = resolveCacheOptions(
      { strategy: "dbcache", Fn: 1, Bn: 1, residual_diff_threshold: 0.5, max_warmup_steps: 1 },
      { blocks, steps: 3, channels: SHAPE[2] },
    ) as ResolvedDbCache;
    const fake = fakeBlocks(ctx, blocks, SHAPE);
    const strategy = new DbCache(ctx, options);
    await drive(ctx, strategy, fake, randomScripts(blocks, 3, 5));
    // M is 3 one-dispatch blocks: keep R_F, the snapshot, M and the store, empty when cached, run when computed.
    const demand = { emptyDispatches: 6, indirectDispatches: 6, readbacks: 1 };
    assert.equal(strategy.stats().decisions, chooseDecisionPath(costs, demand));
    strategy.release();
    fake.release();
  },
);
