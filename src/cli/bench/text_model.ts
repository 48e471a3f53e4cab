// bench:model on a text-to-digit FluxPipeline (weights/mnist-flux): every digit drawn from the phrasings its
// training never saw (prompts.json `heldout`), scored by the digit classifier; seconds per image split into
// text encoding, denoising and VAE decode; and the same prompts through diffusers' FluxPipeline on PyTorch
// (CPU) in the same run (tools/bench_mnist_flux_torch.py), as ratios.
import type { GpuContext } from "../../gpu/context.ts";
import { classifierInput, DigitClassifier } from "../../model/classifier.ts";
import type { PhaseSeconds } from "../../pipeline/generate.ts";
import type { FluxCard } from "../../pipeline/model_card.ts";
import { FluxPipeline } from "../../pipeline/pipelines/flux.ts";
import { resolveRequest } from "../../pipeline/request.ts";
import { DigitScores } from "./digit_scores.ts";
import { benchPrompts, requireHeldOutPrompts } from "./heldout_prompts.ts";
import { pythonProblem, pythonReference } from "./python_reference.ts";

const SCRIPT = "tools/bench_mnist_flux_torch.py";
/** Not a held-out phrasing, so that the warm-up leaves none of them remembered by the prompt cache. */
const WARM_UP_PROMPT = "a handwritten digit";

export interface TextBenchFlags {
  perDigit: number;
  steps: number;
  guidance: number;
  /** Above 1: true CFG against the empty prompt (diffusers' negative_prompt=""). */
  trueCfg: number;
  batch: number;
  torchImages: number;
  python: string;
  diffusersSrc?: string;
  quiet: boolean;
}

interface TorchReference {
  images: number;
  seconds_per_image: number;
  encode_seconds_per_image: number;
  denoise_seconds_per_image: number;
  decode_seconds_per_image: number;
}

const perImage = (phases: Required<PhaseSeconds>, images: number) => ({
  encode: phases.encode / images,
  denoise: phases.denoise / images,
  decode: phases.decode / images,
});

async function torchSide(dir: string, prompts: string[], flags: TextBenchFlags) {
  const problem = await pythonProblem(flags.python, flags.diffusersSrc, [
    "torch",
    "diffusers",
    "transformers",
  ]);
  if (problem) return { unavailable: problem };
  try {
    return await pythonReference<TorchReference>(flags.python, flags.diffusersSrc, SCRIPT, [
      ...[dir, "--prompts", JSON.stringify(prompts), "--steps", String(flags.steps)],
      ...["--batch", String(flags.batch), "--true-cfg", String(flags.trueCfg)],
    ]);
  } catch (e) {
    return { unavailable: (e as Error).message };
  }
}

export async function benchTextModel(ctx: GpuContext, card: FluxCard, flags: TextBenchFlags) {
  const images = benchPrompts(await requireHeldOutPrompts(card.dir), flags.perDigit);
  const trueCfg = flags.trueCfg > 1;
  const request = (prompts: string[], seed: number) =>
    resolveRequest(card, {
      prompts,
      ...(trueCfg ? { negativePrompt: "", true_cfg: flags.trueCfg } : {}),
      steps: flags.steps,
      guidance: flags.guidance,
      seed,
      shift: 1,
      eta: 0,
      cache: "none",
    });
  const model = await FluxPipeline.load(ctx, card);
  const classifier = await DigitClassifier.load(ctx);
  const scores = new DigitScores(classifier);
  const phases = { encode: 0, denoise: 0, decode: 0 };
  let encoderPasses = 0;
  try {
    // Untimed: loads CLIP and T5, compiles every kernel and builds the batch's graphs (and, under true CFG,
    // remembers the empty negative prompt, as a serving engine would after its first request).
    await model.run(request(new Array(Math.min(flags.batch, images.length)).fill(WARM_UP_PROMPT), 0));
    const encoder = await model.promptEncoder();
    for (let start = 0; start < images.length; start += flags.batch) {
      const chunk = images.slice(start, start + flags.batch);
      const passesBefore = encoder.encodes;
      const result = await model.run(request(chunk.map((c) => c.prompt), 1000 + start), { timePhases: true });
      encoderPasses += encoder.encodes - passesBefore;
      for (const key of ["encode", "denoise", "decode"] as const) phases[key] += result.phases?.[key] ?? 0;
      await scores.add(classifierInput(result.images, result.shape), chunk.map((c) => c.digit));
      if (!flags.quiet) console.error(`${start + chunk.length}/${images.length} images`);
    }
  } finally {
    classifier.release();
    model.release();
  }
  const summary = await scores.summary();
  const torchPrompts = images.slice(0, flags.torchImages).map((c) => c.prompt);
  const torch = torchPrompts.length > 0
    ? await torchSide(card.dir, torchPrompts, flags)
    : { unavailable: "--torch-images 0" };
  const engine = perImage(phases, images.length);
  const secondsPerImage = engine.encode + engine.denoise + engine.decode;
  const ran = "seconds_per_image" in torch ? torch : null;
  return {
    adapter: `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`,
    weights: `${card.dir} (${card.pipeline})`,
    prompts: `prompts.json heldout: ${new Set(images.map((c) => c.prompt)).size} distinct phrasings, ` +
      "each digit cycling through its own",
    images: images.length,
    steps: flags.steps,
    trueCfg: trueCfg ? flags.trueCfg : null,
    batch: flags.batch,
    size: `${card.size.width}x${card.size.height}`,
    maxSequenceLength: card.text.maxSequenceLength,
    ...summary,
    secondsPerImage,
    secondsPerImageSplit: engine,
    encoderPasses,
    timing: "after one untimed warm-up batch; each phase ends when the GPU has finished it; encode is " +
      `${encoderPasses} CLIP + T5 passes for ${images.length} prompts (a prompt the engine remembers costs none` +
      (trueCfg ? "; the empty negative prompt is remembered from the warm-up)" : ")"),
    torch,
    vsTorch: ran
      ? {
        secondsPerImage: secondsPerImage / ran.seconds_per_image,
        encode: engine.encode / ran.encode_seconds_per_image,
        denoise: engine.denoise / ran.denoise_seconds_per_image,
        decode: engine.decode / ran.decode_seconds_per_image,
      }
      : null,
  };
}
