// deno task bench:model [--per-digit 100] [--steps 28] [--guidance 3] [--batch 25] [--json]
// Quality and speed of the embedded model, in one run: classifier accuracy on the asked digit, Frechet
// distance of classifier features against held-out real digits, seconds per step, the model's effective
// GFLOP/s next to the matmul kernel's and next to the same model in PyTorch on this CPU.
import { parseArgs } from "node:util";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { fitGaussian, frechetDistance, type Gaussian } from "../metrics/frechet.ts";
import { CLASSIFIER_DIR, DigitClassifier } from "../model/classifier.ts";
import { readModelCard } from "../pipeline/model_card.ts";
import { MnistDitPipeline } from "../pipeline/pipelines/mnist_dit.ts";
import { resolveRequest } from "../pipeline/request.ts";
import { forEachTensor, readSafetensorsHeader } from "../model/safetensors.ts";
import { matmulKernelGflops } from "./bench/harness.ts";

const FEATURES = 128;

async function heldOutGaussian(path: string): Promise<Gaussian> {
  const header = await readSafetensorsHeader(path);
  const found = new Map<string, Float32Array>();
  await forEachTensor(header, ["mean", "cov"], (entry, data) => void found.set(entry.name, data));
  return { mean: Float64Array.from(found.get("mean")!), covariance: Float64Array.from(found.get("cov")!) };
}

/** PyTorch forward time per sample on this CPU, from the training script; null where torch is missing. */
async function pytorchForward(): Promise<{ msPerSample: number; batch: number } | null> {
  try {
    const out = await new Deno.Command("/usr/bin/python3", {
      args: ["tools/train_mnist_dit.py", "--bench"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return null;
    const report = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
    return { msPerSample: report.forward_ms_per_sample_batch8, batch: 8 };
  } catch {
    return null;
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "per-digit": { type: "string", default: "100" },
      steps: { type: "string", default: "28" },
      guidance: { type: "string", default: "3" },
      batch: { type: "string", default: "25" },
      json: { type: "boolean", default: false },
    },
  });
  const [perDigit, steps, guidance, batch] = [
    values["per-digit"],
    values.steps,
    values.guidance,
    values.batch,
  ].map(Number);
  if (![perDigit, steps, batch].every((v) => Number.isInteger(v) && v > 0) || !(guidance >= 0)) {
    console.error("--per-digit, --steps and --batch must be positive integers, --guidance a number >= 0");
    return 2;
  }
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const card = await readModelCard("weights/mnist-dit");
  if (card.pipeline !== "MnistDiT") throw new Error("weights/mnist-dit is not the embedded MnistDiT");
  const model = await MnistDitPipeline.load(ctx, card);
  const classifier = await DigitClassifier.load(ctx);
  const labels = Array.from({ length: 10 * perDigit }, (_, i) => i % 10);
  const correct = new Array(10).fill(0);
  const features = new Float32Array(labels.length * FEATURES);
  let seconds = 0;
  let forwards = 0;
  for (let start = 0; start < labels.length; start += batch) {
    const chunk = labels.slice(start, start + batch);
    const request = resolveRequest(card, {
      labels: chunk,
      steps,
      seed: 1000 + start,
      guidance,
      shift: 1,
      eta: 0,
      cache: "none",
    });
    const result = await model.run(request);
    seconds += result.seconds;
    forwards += (guidance === 1 ? 1 : 2) * chunk.length * steps;
    const scored = await classifier.classify(result.images);
    scored.predicted.forEach((p, i) => (correct[chunk[i]] += Number(p === chunk[i])));
    features.set(scored.features, start * FEATURES);
    if (!values.json) console.error(`${start + chunk.length}/${labels.length} images`);
  }
  const fd = frechetDistance(
    fitGaussian(features, labels.length, FEATURES),
    await heldOutGaussian(`${CLASSIFIER_DIR}/heldout-features.safetensors`),
  );
  const modelGflops = (forwards * model.flopsPerSample) / seconds / 1e9;
  const kernelGflops = await matmulKernelGflops(ctx);
  const torch = await pytorchForward();
  const report = {
    adapter: `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`,
    weights: `weights/mnist-dit (${card.config.trained_iterations} iterations)`,
    images: labels.length,
    steps,
    guidance,
    batch,
    accuracy: correct.reduce((a, b) => a + b, 0) / labels.length,
    accuracyPerDigit: correct.map((c) => c / perDigit),
    frechetDistance: fd,
    secondsPerStep: seconds / (steps * Math.ceil(labels.length / batch)),
    secondsPerImage: seconds / labels.length,
    modelGflops,
    matmulKernelGflops: kernelGflops,
    modelShareOfKernel: modelGflops / kernelGflops,
    pytorchGflops: torch ? model.flopsPerSample / (torch.msPerSample / 1000) / 1e9 : null,
  };
  console.log(values.json ? JSON.stringify(report) : JSON.stringify(report, null, 2));
  classifier.release();
  model.release();
  ctx.destroy();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
