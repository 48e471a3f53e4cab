// deno task bench:wan --model DIR [--size 320x192] [--frames 9] [--guidance 5] [--repeat 2] [--python PYTHON]
//   [--diffusers-src DIR] [--cache-steps N [--only "F1B0 (0.08),..."]] [--json]
// Wan2.1 at its real width (tools/wan_random_pipeline.py writes DIR: the 1.3B transformer in BF16 and the VAE,
// random weights, text encoder null): one guided UniPC step (the conditional and unconditional forwards as
// WanPipeline runs them, and the scheduler update) and the VAE decode of the latents it leaves, from seeded
// latents and prompt embeddings [1, 512, text_dim], timed on this adapter as whole runs waited on (--repeat:
// the first run also compiles every kernel, the last one is reported); GFLOP/s of the step from the
// transformer's matmul and attention FLOPs, of the decode from its convolutions' (src/model/wan_vae/flops.ts);
// GPU memory held (weights in their stored dtypes, and every buffer the pool owns after the run); and, with
// --python, the same step and decode in diffusers on PyTorch (CPU, float32) from the same weights and inputs in
// the same run (tools/bench_wan_torch.py), as ratios (engine seconds / PyTorch seconds), the engine's video
// checked against PyTorch's. With --cache-steps, instead: the
// one-stream cache configurations (--only some of them) on an N-step video against the uncached one
// (src/cli/bench/wan_cache.ts). Prints a markdown table, or with --json the whole report.
import { markdownTable } from "markdown-table";
import { parseArgs } from "node:util";
import { readFloat32Tensors } from "../model/safetensors.ts";
import { wanVaeDecodeFlops } from "../model/wan_vae/flops.ts";
import { encodeSafetensors } from "../model/safetensors_writer.ts";
import { readModelCard, wanLatentShape } from "../pipeline/model_card.ts";
import { gaussianNoise } from "../pipeline/noise.ts";
import { requestFrames, WanPipeline } from "../pipeline/pipelines/wan.ts";
import { resolveRequest } from "../pipeline/request.ts";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { maxAbsDiff } from "./bench/harness.ts";
import { pythonProblem, pythonReference } from "./bench/python_reference.ts";
import { wanCacheMarkdown, wanCacheTable } from "./bench/wan_cache.ts";

const SCRIPT = "tools/bench_wan_torch.py";
/** Real tokens of the random prompt; the rest of its 512 rows are zero, as WanPipeline leaves them. */
const PROMPT_TOKENS = 24;
const USAGE = "usage: deno task bench:wan --model DIR [--size 320x192] [--frames 9] [--guidance 5] " +
  "[--repeat 2] [--python PYTHON] [--diffusers-src DIR] [--cache-steps N [--only NAMES]] [--json]";

class FlagError extends Error {}

interface TorchReference {
  threads: number;
  step_seconds: number;
  decode_seconds: number;
}

function parseFlags(args: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        model: { type: "string" },
        size: { type: "string", default: "320x192" },
        frames: { type: "string", default: "9" },
        guidance: { type: "string", default: "5" },
        repeat: { type: "string", default: "2" },
        "cache-steps": { type: "string" },
        only: { type: "string", default: "" },
        python: { type: "string" },
        "diffusers-src": { type: "string" },
        json: { type: "boolean", default: false },
      },
    }));
  } catch (e) {
    throw new FlagError((e as Error).message.split(". ")[0]);
  }
  if (!values.model) throw new FlagError("--model DIR is required");
  const repeat = Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1) {
    throw new FlagError(`--repeat ${values.repeat}: give an integer >= 1`);
  }
  const cacheSteps = values["cache-steps"] === undefined ? null : Number(values["cache-steps"]);
  if (cacheSteps !== null && !(Number.isInteger(cacheSteps) && cacheSteps >= 2)) {
    throw new FlagError(`--cache-steps ${values["cache-steps"]}: give an integer >= 2`);
  }
  const only = values.only ? values.only.split(",").map((name) => name.trim()) : [];
  return { ...values, model: values.model, repeat, cacheSteps, only };
}

/** Seeded prompt embeddings [1, L, width], zero past the prompt's tokens. */
function promptEmbeds(seed: number, tokens: number, width: number) {
  const data = gaussianNoise(seed, tokens * width).fill(0, PROMPT_TOKENS * width);
  return { shape: [1, tokens, width], data };
}

/** Frames [T, 3, H, W] (the pipeline's order) as PyTorch's video [1, 3, T, H, W]. */
function channelsFirst(frames: Float32Array, shape: readonly number[]): Float32Array {
  const [count, channels, height, width] = shape;
  const plane = height * width;
  const out = new Float32Array(frames.length);
  for (let t = 0; t < count; t++) {
    for (let c = 0; c < channels; c++) {
      out.set(
        frames.subarray((t * channels + c) * plane, (t * channels + c + 1) * plane),
        (c * count + t) * plane,
      );
    }
  }
  return out;
}

async function torchSide(
  flags: ReturnType<typeof parseFlags>,
  inputs: Record<string, { shape: number[]; data: Float32Array }>,
) {
  const python = flags.python!;
  const problem = await pythonProblem(python, flags["diffusers-src"], ["torch", "diffusers"]);
  if (problem) return { unavailable: problem };
  const dir = await Deno.makeTempDir({ prefix: "bench-wan-" });
  try {
    await Deno.writeFile(`${dir}/inputs.safetensors`, encodeSafetensors(inputs, {}));
    const report = await pythonReference<TorchReference>(python, flags["diffusers-src"], SCRIPT, [
      flags.model,
      ...["--inputs", `${dir}/inputs.safetensors`, "--out", `${dir}/out.safetensors`],
      ...["--size", flags.size!, "--frames", flags.frames!, "--guidance", flags.guidance!],
    ]);
    const out = await readFloat32Tensors(`${dir}/out.safetensors`);
    return { ...report, video: out.get("video")!.data };
  } catch (e) {
    return { unavailable: (e as Error).message };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function main(args: string[]): Promise<number> {
  const flags = parseFlags(args);
  const card = await readModelCard(flags.model);
  if (card.pipeline !== "WanPipeline") {
    throw new FlagError(`--model ${card.dir}: a ${card.pipeline}, not a WanPipeline`);
  }
  const input = {
    embeddings: { images: 1, negative: true },
    size: flags.size,
    frames: Number(flags.frames),
    steps: 1,
    guidance: Number(flags.guidance),
    seed: 0,
    shift: 1,
    eta: 0,
  };
  const request = resolveRequest(card, { ...input, cache: "none" });
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const pipeline = await WanPipeline.load(ctx, card);
  const { maxSequenceLength: tokens, promptEmbedDim: width } = card.text;
  const embeddings = {
    prompt_embeds: promptEmbeds(1, tokens, width),
    negative_prompt_embeds: promptEmbeds(2, tokens, width),
  };
  const shape = [1, ...wanLatentShape(card, request.size, requestFrames(card, request))];
  const latents = gaussianNoise(3, shape.reduce((a, b) => a * b, 1));
  if (flags.cacheSteps !== null) {
    const run = { request: { ...input, steps: flags.cacheSteps }, latents, embeddings, only: flags.only };
    const rows = await wanCacheTable(ctx, card, pipeline, run);
    const adapter = `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`;
    console.log(
      flags.json
        ? JSON.stringify({ model: card.dir, adapter, request: run.request, rows }, null, 2)
        : `adapter: ${adapter}\n${wanCacheMarkdown(rows, flags.cacheSteps)}`,
    );
    pipeline.release();
    return 0;
  }
  let last;
  for (let r = 0; r < flags.repeat; r++) {
    // At full width on a software adapter one run takes minutes: say what is running.
    console.error(`bench:wan: run ${r + 1}/${flags.repeat}: one guided step, then the VAE decode`);
    last = await pipeline.run(request, { latents, embeddings, timePhases: true });
    console.error(
      `bench:wan: step ${last.phases!.denoise.toFixed(1)} s, decode ${last.phases!.decode.toFixed(1)} s`,
    );
  }
  const phases = last!.phases!;
  const pool = ctx.pool.stats();
  const flops = 2 * pipeline.transformer.flopsPerSample(pipeline.graphShape(request, tokens));
  const decodeFlops = wanVaeDecodeFlops(card.vae, shape);
  if (flags.python) console.error("bench:wan: the same step and decode on PyTorch");
  const torch = flags.python
    ? await torchSide(flags, { latents: { shape, data: latents }, ...embeddings })
    : { unavailable: "no --python" };
  const report = {
    model: card.dir,
    adapter: `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`,
    request: {
      size: flags.size,
      frames: Number(flags.frames),
      guidance: Number(flags.guidance),
      latents: shape,
    },
    step: { seconds: phases.denoise, gflops: flops / phases.denoise / 1e9, flops },
    decode: { seconds: phases.decode, gflops: decodeFlops / phases.decode / 1e9, flops: decodeFlops },
    memory: { weightBytes: pipeline.weightBytes, poolBytes: pool.bytesHeld },
    torch: "unavailable" in torch ? torch : {
      threads: torch.threads,
      step_seconds: torch.step_seconds,
      decode_seconds: torch.decode_seconds,
      step_ratio: phases.denoise / torch.step_seconds,
      decode_ratio: phases.decode / torch.decode_seconds,
      video_max_abs_diff: maxAbsDiff(channelsFirst(last!.images, last!.shape), torch.video),
    },
  };
  console.log(flags.json ? JSON.stringify(report, null, 2) : table(report));
  pipeline.release();
  return 0;
}

function table(r: {
  adapter: string;
  step: { seconds: number; gflops: number };
  decode: { seconds: number; gflops: number };
  memory: { weightBytes: number; poolBytes: number };
  torch: Record<string, unknown>;
}): string {
  const t = r.torch as Record<string, number | string>;
  const ratio = (key: string) =>
    typeof t[key] === "number" ? (t[key] as number).toFixed(2) : String(t.unavailable);
  const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(2);
  return [
    `adapter: ${r.adapter}`,
    markdownTable([
      ["phase", "seconds", "GFLOP/s", "PyTorch seconds", "engine / PyTorch"],
      [
        "one guided step (2 forwards + UniPC)",
        r.step.seconds.toFixed(2),
        r.step.gflops.toFixed(2),
        String(t.step_seconds ?? "-"),
        ratio("step_ratio"),
      ],
      [
        "VAE decode",
        r.decode.seconds.toFixed(2),
        r.decode.gflops.toFixed(2),
        String(t.decode_seconds ?? "-"),
        ratio("decode_ratio"),
      ],
    ]),
    `GPU memory: weights ${gib(r.memory.weightBytes)} GiB, pool ${gib(r.memory.poolBytes)} GiB; ` +
    `video max |engine - PyTorch| ${t.video_max_abs_diff ?? "-"}`,
  ].join("\n");
}

try {
  Deno.exit(await main(Deno.args));
} catch (e) {
  if (!(e instanceof FlagError)) throw e;
  console.error(`${e.message}\n${USAGE}`);
  Deno.exit(2);
}
