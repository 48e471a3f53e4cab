// Properties every cache strategy must have, run on the scripted fake block list (one stream, or the image
// and text streams of tests/cache/two_streams.ts): a strategy file's test calls conformanceSuite with a
// factory for its strategy at a given threshold and warmup.
import assert from "node:assert/strict";
import { DECISION_PATHS, type DecisionPath } from "../../src/cache/decision_path.ts";
import { type CacheStrategy, type ForwardReport, NoCache } from "../../src/cache/strategy.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { dyadic, type FakeBlocks, fakeBlocks } from "../support/fake_blocks.ts";
import { gpuTest } from "../support/gpu.ts";
import { randn } from "../support/random.ts";

export const SHAPE = [2, 5, 12]; // CFG halves batched, odd token count
export const SIZE = 2 * 5 * 12;

export interface StepScript {
  hidden: Float32Array;
  residuals: Float32Array[];
  /** A two-stream list's text stream, when not the one the image script implies. */
  text?: { hidden: Float32Array; residuals: Float32Array[] };
}

/** A scripted block list of `count` blocks; the one-stream list unless a suite asks for another. */
export type FakeFactory = (ctx: GpuContext, count: number) => FakeBlocks & { text?: FakeBlocks };

export const oneStream: FakeFactory = (ctx, count) => fakeBlocks(ctx, count, SHAPE);

/** `path`: the decision path a strategy that has one takes (the suite runs each). */
export type StrategyFactory = (
  ctx: GpuContext,
  setup: { threshold: number; warmup: number; blocks: number; steps: number; path: DecisionPath },
) => CacheStrategy;

/**
 * Runs `scripts` (one per step) through `strategy`; returns each forward's report, `hidden` after it and, on
 * a two-stream list, the text stream after it. The reports forward() leaves on the GPU come from settle():
 * after the last step, as in a run without onStep, or with `behind` after every step, as onStep reads them.
 */
export async function drive(
  ctx: GpuContext,
  strategy: CacheStrategy,
  fake: FakeBlocks & { text?: FakeBlocks },
  scripts: readonly StepScript[],
  options: { behind?: boolean } = {},
): Promise<{ reports: ForwardReport[]; outputs: Float32Array[]; texts: Float32Array[] }> {
  const recorder = new StepRecorder(ctx.gpu);
  const reports: (ForwardReport | null)[] = [];
  const settled: ForwardReport[] = [];
  const outputs: Float32Array[] = [];
  const texts: Float32Array[] = [];
  for (const [step, s] of scripts.entries()) {
    fake.script(s.hidden, s.residuals);
    if (s.text) {
      if (!fake.text) throw new Error("drive: a text script for a one-stream list");
      fake.text.script(s.text.hidden, s.text.residuals);
    }
    reports.push(await strategy.forward({ step, steps: scripts.length }, fake.list, recorder));
    await ctx.kernels.ready();
    recorder.submit();
    const behind = options.behind ? strategy.settle(recorder) : null;
    outputs.push(await recorder.read(fake.list.hidden));
    if (fake.text) texts.push(await recorder.read(fake.text.list.hidden));
    if (behind) {
      const got = await behind;
      assert.equal(got.length, reports[step] === null ? 1 : 0, `settle() after step ${step} reports it`);
      settled.push(...got);
    }
  }
  settled.push(...await strategy.settle(recorder));
  assert.equal(
    settled.length,
    reports.filter((r) => r === null).length,
    "settle() reports each step left on the GPU",
  );
  return { reports: reports.map((r) => r ?? settled.shift()!), outputs, texts };
}

/** Random (not exactly representable) residuals that change every step. */
export function randomScripts(blocks: number, steps: number, seed: number): StepScript[] {
  return Array.from({ length: steps }, (_, s) => ({
    hidden: randn(SIZE, seed + 1000 * s),
    residuals: Array.from({ length: blocks }, (_, i) => randn(SIZE, seed + 1000 * s + i + 1, 0.1)),
  }));
}

/** The same dyadic hidden and residuals every step: every diff is exactly 0. */
export function constantScripts(blocks: number, steps: number, seed: number): StepScript[] {
  const hidden = dyadic(SIZE, seed);
  const residuals = Array.from({ length: blocks }, (_, i) => dyadic(SIZE, seed + i + 1));
  return Array.from({ length: steps }, () => ({ hidden, residuals }));
}

export interface SuiteOptions {
  fakes?: FakeFactory;
  /** The strategy always computes the last step (TeaCache, EasyCache). */
  lastStepComputes?: boolean;
  /** The decision paths the strategy has (default both; DMD's calibrator needs the readback path). */
  paths?: readonly DecisionPath[];
}

/** Each property on both decision paths: read back mid-step, then decided on the GPU. */
export function conformanceSuite(name: string, make: StrategyFactory, options: SuiteOptions = {}): void {
  const paths = options.paths ?? DECISION_PATHS;
  for (const path of [...paths].reverse()) properties(`${name} (${path})`, make, options, path);
}

function properties(name: string, make: StrategyFactory, options: SuiteOptions, path: DecisionPath): void {
  const fakes = options.fakes ?? oneStream;
  const last = options.lastStepComputes ? [false] : [true];
  const blocks = 5;
  const steps = 6;

  gpuTest(`${name} conformance: threshold 0 equals none, bit for bit, at every step`, async (ctx) => {
    const scripts = randomScripts(blocks, steps, 11);
    const plain = fakes(ctx, blocks);
    const expected = await drive(ctx, new NoCache(), plain, scripts);
    plain.release();
    const fake = fakes(ctx, blocks);
    const strategy = make(ctx, { threshold: 0, warmup: 1, blocks, steps, path });
    const got = await drive(ctx, strategy, fake, scripts);
    got.outputs.forEach((o, s) => assert.deepEqual(o, expected.outputs[s], `step ${s}`));
    got.texts.forEach((t, s) => assert.deepEqual(t, expected.texts[s], `text stream, step ${s}`));
    assert.deepEqual(got.reports.map((r) => r.cached), new Array(steps).fill(false));
    // On the GPU path a strategy reads its per-step log once at the end; nothing reads a diff.
    assert.ok(
      strategy.stats().readbacks <= (path === "gpu" ? 1 : 0),
      "threshold 0 decides without reading a diff",
    );
    strategy.release();
    fake.release();
  });

  gpuTest(`${name} conformance: warmup steps always compute, even when nothing changes`, async (ctx) => {
    const fake = fakes(ctx, blocks);
    const strategy = make(ctx, { threshold: 10, warmup: 3, blocks, steps, path });
    const { reports } = await drive(ctx, strategy, fake, constantScripts(blocks, steps, 5));
    assert.deepEqual(reports.map((r) => r.cached), [false, false, false, true, true, ...last]);
    assert.deepEqual(reports.slice(0, 3).map((r) => r.blocksRun), [blocks, blocks, blocks]);
    strategy.release();
    fake.release();
  });

  gpuTest(`${name} conformance: reports read behind every step are those read after the run`, async (ctx) => {
    const scripts = randomScripts(blocks, steps, 13);
    const runs = [];
    for (const behind of [false, true]) {
      const fake = fakes(ctx, blocks);
      const strategy = make(ctx, { threshold: 0.5, warmup: 1, blocks, steps, path });
      runs.push({ ...await drive(ctx, strategy, fake, scripts, { behind }), stats: strategy.stats() });
      strategy.release();
      fake.release();
    }
    const [after, behind] = runs;
    assert.deepEqual(behind.reports, after.reports);
    assert.deepEqual(behind.outputs, after.outputs);
    assert.deepEqual(behind.texts, after.texts);
    assert.deepEqual({ ...behind.stats, readbacks: 0 }, { ...after.stats, readbacks: 0 });
  });

  gpuTest(`${name} conformance: stats agree with the reports; release frees the cache`, async (ctx) => {
    const fake = fakes(ctx, blocks);
    const strategy = make(ctx, { threshold: 10, warmup: 2, blocks, steps, path });
    const { reports } = await drive(ctx, strategy, fake, constantScripts(blocks, steps, 7));
    const stats = strategy.stats();
    const cached = reports.flatMap((r, s) => r.cached ? [s] : []);
    assert.deepEqual(stats.cachedSteps, cached);
    assert.deepEqual([...stats.cachedSteps, ...stats.computedSteps].sort((a, b) => a - b), [
      0,
      1,
      2,
      3,
      4,
      5,
    ]);
    assert.equal(stats.steps, steps);
    assert.equal(stats.blocksExecuted, reports.reduce((sum, r) => sum + r.blocksRun, 0));
    assert.equal(stats.blocksTotal, blocks * steps);
    assert.ok(stats.blocksExecuted < stats.blocksTotal, "a threshold of 10 on unchanging residuals caches");
    assert.deepEqual(stats.diffs, reports.map((r) => r.diff ?? null));
    assert.equal(stats.memoryBytes, strategy.memoryBytes());
    assert.ok(stats.memoryBytes > 0);
    strategy.release();
    assert.equal(strategy.memoryBytes(), 0);
    fake.release();
  });
}
