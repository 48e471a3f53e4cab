// deno task bench [--per-digit 1] [--steps 28] [--guidance 3] [--only "F1B0 (0.08),..."] [--json]
//   [--grid docs/cache-grid.png]
// Speed against quality for each cache configuration on the embedded model, measured in one run: the same
// labels and seeds per configuration, one image per request (as a server runs them), configurations
// interleaved per image so load changes hit all of them alike. Quality: PSNR (over the whole set) and mean
// SSIM against the uncached image of the same seed, and the classifier's accuracy on the asked digit. Writes a
// markdown table (or one JSON object per configuration) and a PNG grid with one row per configuration.
import { parseArgs } from "node:util";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { BENCH_CONFIGS, type BenchConfig } from "./bench/cache_configs.ts";
import { createStrategy } from "../cache/create.ts";
import { resolveCacheOptions } from "../cache/options.ts";
import type { GpuContext } from "../gpu/context.ts";
import { psnr, ssim } from "../metrics/image_quality.ts";
import { DigitClassifier } from "../model/classifier.ts";
import { Dit } from "../model/dit.ts";
import { generate, type GenerateResult } from "../pipeline/generate.ts";
import { gpuCacheDecision } from "../ops/cache_decision.ts";
import { residualDiff } from "../ops/residual_diff.ts";
import { timeDispatches } from "./bench/harness.ts";
import { isDispatch } from "../gpu/kernel.ts";
import { encodeImagesPng } from "../pipeline/image.ts";

interface Row {
  config: string;
  cache: Record<string, unknown>;
  seconds: number;
  speedup: number;
  cachedSteps: number;
  blocksSaved: number;
  psnr: number;
  ssim: number;
  accuracy: number;
  readbacksPerImage: number;
  memoryBytes: number;
}

interface Totals {
  seconds: number;
  cachedSteps: number;
  blocksExecuted: number;
  blocksTotal: number;
  readbacks: number;
  memoryBytes: number;
  correct: number;
  ssim: number[];
  images: Float32Array[];
}

const clamp = (images: Float32Array) => images.map((v) => Math.min(1, Math.max(-1, v)));

async function runOne(
  ctx: GpuContext,
  model: Dit,
  config: BenchConfig,
  request: { labels: number[]; steps: number; seed: number; guidance: number },
): Promise<GenerateResult> {
  const options = resolveCacheOptions(config.cache, {
    blocks: model.depth,
    steps: request.steps,
    channels: model.config.hidden_size,
  });
  const strategy = createStrategy(ctx, options);
  try {
    return await generate(ctx, model, request, { strategy });
  } finally {
    strategy.release();
  }
}

/** Milliseconds of the decision's own kernels (residual diff + decision) on the model's hidden stream. */
async function decisionMs(ctx: GpuContext, model: Dit, guided: boolean): Promise<number> {
  const hidden = model.graph(guided ? 2 : 1).hidden;
  const reference = ctx.pool.upload(new Float32Array(hidden.size).fill(1), hidden.shape);
  const diff = residualDiff(ctx, reference, hidden);
  const decision = gpuCacheDecision(ctx, diff.result, [], 1, {
    residual_diff_threshold: 0.1,
    max_cached_steps: -1,
    max_continuous_cached_steps: -1,
    max_accumulated_residual_diff: null,
  });
  decision.setStep(0, null);
  const ms = await timeDispatches(ctx, [...diff.dispatches, ...decision.commands.filter(isDispatch)]);
  decision.release();
  diff.release();
  reference.release();
  return ms;
}

/** All images as one signal: one PSNR over the set, finite unless every image equals its uncached one. */
function concat(images: Float32Array[]): Float32Array {
  const out = new Float32Array(images.reduce((n, i) => n + i.length, 0));
  images.reduce((offset, i) => (out.set(i, offset), offset + i.length), 0);
  return out;
}

function summarise(config: BenchConfig, t: Totals, baseline: Totals, images: number): Row {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    config: config.name,
    cache: config.cache,
    seconds: t.seconds,
    speedup: baseline.seconds / t.seconds,
    cachedSteps: t.cachedSteps / images,
    blocksSaved: 1 - t.blocksExecuted / t.blocksTotal,
    psnr: psnr(concat(t.images), concat(baseline.images), 2),
    ssim: mean(t.ssim),
    accuracy: t.correct / images,
    readbacksPerImage: t.readbacks / images,
    memoryBytes: t.memoryBytes,
  };
}

function markdown(rows: Row[], header: string): string {
  const lines = [
    header,
    "",
    "| configuration | seconds | speedup | cached steps / 28 | block executions saved | PSNR dB | SSIM | accuracy | readbacks / image | cache memory |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.config} | ${r.seconds.toFixed(2)} | ${r.speedup.toFixed(2)}x | ${r.cachedSteps.toFixed(1)} | ` +
        `${(100 * r.blocksSaved).toFixed(1)}% | ${Number.isFinite(r.psnr) ? r.psnr.toFixed(1) : "inf"} | ` +
        `${r.ssim.toFixed(3)} | ${(100 * r.accuracy).toFixed(0)}% | ${r.readbacksPerImage.toFixed(1)} | ` +
        `${(r.memoryBytes / 1024).toFixed(0)} KiB |`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "per-digit": { type: "string", default: "1" },
      steps: { type: "string", default: "28" },
      guidance: { type: "string", default: "3" },
      only: { type: "string" },
      grid: { type: "string", default: "docs/cache-grid.png" },
      json: { type: "boolean", default: false },
    },
  });
  const [perDigit, steps, guidance] = [values["per-digit"], values.steps, values.guidance].map(Number);
  if (![perDigit, steps].every((v) => Number.isInteger(v) && v > 0) || !(guidance >= 0 && guidance <= 30)) {
    console.error("--per-digit and --steps must be positive integers, --guidance a number in 0..30");
    return 2;
  }
  const wanted = values.only?.split(",").map((s) => s.trim());
  const configs = BENCH_CONFIGS.filter((c, i) => i === 0 || !wanted || wanted.includes(c.name));
  if (wanted && configs.length !== wanted.length + 1) {
    console.error(`--only: valid configurations: ${BENCH_CONFIGS.slice(1).map((c) => c.name).join(", ")}`);
    return 2;
  }
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const model = await Dit.load(ctx, "weights/mnist-dit");
  const classifier = await DigitClassifier.load(ctx);
  const labels = Array.from({ length: 10 * perDigit }, (_, i) => i % 10);
  const totals: Totals[] = configs.map(() => ({
    seconds: 0,
    cachedSteps: 0,
    blocksExecuted: 0,
    blocksTotal: 0,
    readbacks: 0,
    memoryBytes: 0,
    correct: 0,
    ssim: [],
    images: [],
  }));
  // Compile every pipeline the configurations use before anything is timed.
  for (const config of configs) await runOne(ctx, model, config, { labels: [0], steps, seed: 0, guidance });
  const size = model.config.sample_size;
  for (const [i, label] of labels.entries()) {
    const request = { labels: [label], steps, seed: 1 + i, guidance };
    let baseline: Float32Array | null = null;
    for (const [c, config] of configs.entries()) {
      const result = await runOne(ctx, model, config, request);
      const image = clamp(result.images);
      baseline ??= image;
      const t = totals[c];
      t.seconds += result.seconds;
      t.cachedSteps += result.cache.cachedSteps.length;
      t.blocksExecuted += result.cache.blocksExecuted;
      t.blocksTotal += result.cache.blocksTotal;
      t.readbacks += result.readbacks;
      t.memoryBytes = Math.max(t.memoryBytes, result.cache.memoryBytes);
      t.correct += Number((await classifier.classify(result.images)).predicted[0] === label);
      t.ssim.push(ssim(image, baseline, size, size, 2));
      t.images.push(image);
    }
    if (!values.json) console.error(`${i + 1}/${labels.length} images`);
  }
  const rows = configs.map((config, c) => summarise(config, totals[c], totals[0], labels.length));
  const adapter = `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`;
  const decision = await decisionMs(ctx, model, guidance !== 1);
  const stepMs = (1000 * totals[0].seconds) / (labels.length * steps);
  if (values.json) {
    const common = { adapter, steps, guidance, images: labels.length, decisionMs: decision, stepMs };
    for (const r of rows) console.log(JSON.stringify({ ...r, ...common }));
  } else {
    console.log(markdown(
      rows,
      `${labels.length} images (digits 0-9, seeds 1..${labels.length}), ${steps} steps, guidance ${guidance}, ` +
        `one image per request; ${adapter}`,
    ));
    console.log(
      `\nDecision kernels (residual diff + decision): ${decision.toFixed(2)} ms = ` +
        `${((100 * decision) / stepMs).toFixed(1)}% of an uncached step (${stepMs.toFixed(1)} ms).`,
    );
  }
  const grid = new Float32Array(configs.length * labels.length * size * size);
  totals.forEach((t, c) =>
    t.images.forEach((img, i) => grid.set(img, (c * labels.length + i) * size * size))
  );
  await Deno.writeFile(
    values.grid!,
    encodeImagesPng(grid, [configs.length * labels.length, 1, size, size], labels.length),
  );
  classifier.release();
  model.release();
  ctx.destroy();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
