// MagCache, TeaCache and EasyCache (the strategies that skip the whole block list) on the scripted fake block
// list: the conformance suite on one and two streams, then every decision and output of random runs against a
// CPU simulation that runs each rule (the CPU reference of its decision) on measures taken in float64.
import assert from "node:assert/strict";
import { createStrategy } from "../../src/cache/create.ts";
import { DECISION_PATHS } from "../../src/cache/decision_path.ts";
import { resolveCacheOptions } from "../../src/cache/options.ts";
import type { GpuContext } from "../../src/gpu/context.ts";
import { residualMeans } from "../../src/ref/residual_diff.ts";
import { wholeListRule } from "../../src/cache/whole_list_rules.ts";
import type { ResolvedWholeList } from "../../src/cache/whole_list_options.ts";
import type { MeanPair } from "../../src/cache/whole_list_cache.ts";
import { fakeBlocks } from "../support/fake_blocks.ts";
import { gpuTest } from "../support/gpu.ts";
import { assertClose } from "../support/assert_close.ts";
import { StepRecorder } from "../../src/gpu/step_recorder.ts";
import { conformanceSuite, drive, randomScripts, SHAPE, SIZE, type StepScript } from "./conformance.ts";
import { twoStreamBlocks } from "./two_streams.ts";

type Options = Record<string, unknown> & { strategy: "magcache" | "teacache" | "easycache" };

function resolve(options: Options, blocks: number, steps: number): ResolvedWholeList {
  return resolveCacheOptions(options, { blocks, steps, channels: SHAPE[2] }) as ResolvedWholeList;
}

/** Each strategy's threshold and warmup knobs, with figures that make unchanging residuals look unchanged. */
function optionsFor(
  strategy: Options["strategy"],
  threshold: number,
  warmup: number,
  steps: number,
): Options {
  switch (strategy) {
    case "magcache":
      return {
        strategy,
        threshold,
        retention_ratio: warmup / steps,
        max_skip_steps: steps,
        mag_ratios: new Array(steps).fill(1),
      };
    case "teacache":
      return { strategy, rel_l1_thresh: threshold, ret_steps: warmup, coefficients: [1, 0] };
    case "easycache":
      return { strategy, thresh: threshold, ret_steps: warmup };
  }
}

for (const strategy of ["magcache", "teacache", "easycache"] as const) {
  for (const fakes of [undefined, twoStreamBlocks]) {
    conformanceSuite(
      `${strategy}${fakes ? " on two streams" : ""}`,
      (ctx, { threshold, warmup, blocks, steps, path }) =>
        createStrategy(ctx, resolve(optionsFor(strategy, threshold, warmup, steps), blocks, steps), path),
      { fakes, lastStepComputes: strategy !== "magcache" },
    );
  }
}

/** The run on the CPU: each block adds its residual; a skipped step adds the last computed step's residual. */
function simulate(options: ResolvedWholeList, scripts: readonly StepScript[]) {
  const { rule } = wholeListRule(options);
  const channels = SHAPE[2];
  const means = (a: Float32Array | Float64Array, b: Float32Array | Float64Array): MeanPair =>
    residualMeans(a, b, channels)[0];
  let previousInput: Float32Array | null = null;
  let computedInput: Float32Array | null = null;
  let computedOutput: Float64Array | null = null;
  let residual: Float64Array | null = null;
  let computed = 0;
  let pending: { output: MeanPair; input: MeanPair } | null = null;
  const decisions: boolean[] = [];
  const outputs: Float64Array[] = [];
  for (const [step, s] of scripts.entries()) {
    let measured: MeanPair | null = null;
    if (rule.measures !== "none" && rule.wants(step, computed)) {
      if (pending) rule.computed?.(pending, computed === 1);
      pending = null;
      measured = means(previousInput!, s.hidden);
    }
    const { cached } = rule.decide(step, measured);
    let out: Float64Array;
    if (cached) {
      out = Float64Array.from(s.hidden, (v, i) => v + residual![i]);
    } else {
      out = Float64Array.from(s.hidden, (v, i) => v + s.residuals.reduce((sum, r) => sum + r[i], 0));
      const input = computedInput ?? new Float32Array(s.hidden.length);
      const output = computedOutput ?? new Float64Array(s.hidden.length);
      pending = { output: means(out, output), input: means(input, s.hidden) };
      residual = out.map((v, i) => v - s.hidden[i]);
      [computedInput, computedOutput] = [s.hidden, out];
      computed++;
    }
    previousInput = s.hidden;
    decisions.push(cached);
    outputs.push(out);
  }
  return { decisions, outputs };
}

/** Hidden states that drift slowly, so that the accumulated measures cross their thresholds mid-run. */
function driftingScripts(blocks: number, steps: number, seed: number, rate = 1): StepScript[] {
  const random = randomScripts(blocks, steps, seed);
  const base = random[0].hidden;
  return random.map((s, step) => ({
    hidden: base.map((v, i) => v + 0.02 * rate * step * s.hidden[i]),
    residuals: s.residuals.map((r, b) => r.map((v, i) => random[0].residuals[b][i] + 0.03 * rate * step * v)),
  }));
}

const RUNS: [string, Options][] = [
  ["magcache", {
    strategy: "magcache",
    threshold: 0.08,
    retention_ratio: 0.1,
    max_skip_steps: 2,
    mag_ratios: [1, 1.05, 1.02, 1.01, 0.99, 1.0, 0.98, 0.97, 1.04, 0.96],
  }],
  ["teacache", { strategy: "teacache", rel_l1_thresh: 0.05, ret_steps: 1, coefficients: [2, 0.001] }],
  ["easycache", { strategy: "easycache", thresh: 0.05, ret_steps: 2 }],
];

for (
  const [[name, options], path] of RUNS.flatMap((run) => DECISION_PATHS.map((path) => [run, path] as const))
) {
  gpuTest(
    `${name}, ${path} path: decisions and outputs of a drifting run equal the CPU rule's`,
    async (ctx: GpuContext) => {
      const [blocks, steps] = [4, 10];
      const resolved = resolve(options, blocks, steps);
      const scripts = driftingScripts(blocks, steps, 23);
      const want = simulate(resolved, scripts);
      assert.ok(want.decisions.some((c) => c), `${name}: the CPU rule caches some steps (${want.decisions})`);
      assert.ok(want.decisions.slice(1).some((c) => !c), `${name}: and computes some after the first`);
      const fake = fakeBlocks(ctx, blocks, SHAPE);
      const strategy = createStrategy(ctx, resolved, path);
      const got = await drive(ctx, strategy, fake, scripts);
      assert.deepEqual(got.reports.map((r) => r.cached), want.decisions);
      // f32 GPU arithmetic against float64: one residual add per element.
      got.outputs.forEach((o, s) => assertClose(o, want.outputs[s], { atol: 1e-5, rtol: 1e-5 }, `step ${s}`));
      const stats = strategy.stats();
      assert.deepEqual(stats.cachedSteps, want.decisions.flatMap((c, s) => c ? [s] : []));
      assert.equal(stats.blocksExecuted, blocks * want.decisions.filter((c) => !c).length);
      // MagCache has nothing to wait for: the host decides it on either path.
      assert.equal(stats.decisions, name === "magcache" ? "readback" : path);
      strategy.release();
      fake.release();
    },
  );
}

// MagCache decides from the calibration alone, so every image of a forward takes the same steps.
for (const [name, options] of RUNS.filter(([name]) => name !== "magcache")) {
  gpuTest(
    `${name}: two images in one forward decide apart, each as its own run would`,
    async (ctx: GpuContext) => {
      const [blocks, steps] = [4, 10];
      const resolved = resolve(options, blocks, steps);
      // Image 0 drifts slowly and image 1 fast: rows 0 and 1 of SHAPE's batch of 2.
      const perImage = [driftingScripts(blocks, steps, 23, 0.5), driftingScripts(blocks, steps, 41, 3)];
      const half = SIZE / 2;
      const row = (s: StepScript) => ({
        hidden: s.hidden.subarray(0, half),
        residuals: s.residuals.map((r) => r.subarray(0, half)),
      });
      const alone = perImage.map((scripts) => simulate(resolved, scripts.map(row)));
      const differ = alone[0].decisions.some((c, s) => c !== alone[1].decisions[s]);
      assert.ok(differ, `the two images must decide apart somewhere: ${alone.map((a) => a.decisions)}`);
      const fake = fakeBlocks(ctx, blocks, SHAPE);
      const strategy = createStrategy(ctx, resolved);
      const recorder = new StepRecorder(ctx.gpu);
      const join = (a: Float32Array, b: Float32Array) => Float32Array.from([...a, ...b]);
      for (let step = 0; step < steps; step++) {
        const [a, b] = perImage.map((scripts) => row(scripts[step]));
        fake.script(join(a.hidden, b.hidden), a.residuals.map((r, k) => join(r, b.residuals[k])));
        await strategy.forward({ step, steps, images: 2 }, fake.list, recorder);
        await ctx.kernels.ready();
        const out = await recorder.read(fake.list.hidden);
        alone.forEach((want, i) =>
          assertClose(out.subarray(i * half, (i + 1) * half), want.outputs[step].slice(0, half), {
            atol: 1e-5,
            rtol: 1e-5,
          }, `image ${i}, step ${step}`)
        );
      }
      const stats = strategy.stats();
      alone.forEach((want, i) =>
        assert.deepEqual(
          stats.images?.[i].cachedSteps,
          want.decisions.flatMap((c, s) => c ? [s] : []),
          `image ${i}`,
        )
      );
      // The blocks were skipped only where both images skipped.
      const both = alone[0].decisions.flatMap((c, s) => c && alone[1].decisions[s] ? [s] : []);
      assert.deepEqual(stats.cachedSteps, both);
      strategy.release();
      fake.release();
    },
  );
}
