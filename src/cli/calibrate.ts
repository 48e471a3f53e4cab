// deno task calibrate --model DIR --strategy magcache|teacache [--sampler S] [--steps N] [--runs 4]
//   [--guidance G] [--prompt TEXT ...] [--seed 1]
// Measures what MagCache (magnitude ratios) or TeaCache (the polynomial from the modulated input's change to
// the output's) needs for this model, sampler and step count, on --runs uncached generations with seeds
// --seed, --seed + 1, ...; class models draw class i % classes for run i, text models the --prompt list (by
// default the training phrasings of the directory's prompts.json). The result is merged into
// DIR/cache_calibration.json, written atomically, where the strategies find it.
import { parseArgs } from "node:util";
import {
  CALIBRATED_STRATEGIES,
  type CalibratedStrategy,
  CALIBRATION_FILE,
  type CalibrationEntry,
  withCalibration,
} from "../cache/calibration.ts";
import { CalibrationRecorder, fitPolynomial, type RunFigures } from "../cache/calibration_recorder.ts";
import { WeightsError } from "../model/safetensors.ts";
import { writeFileAtomically } from "../model/safetensors_writer.ts";
import { type ModelCard, modelName, readModelCard } from "../pipeline/model_card.ts";
import { loadPipeline } from "../pipeline/pipelines/load.ts";
import { RequestError, type RequestInput, resolveRequest } from "../pipeline/request.ts";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";

/** TeaCache's authors fit degree 4. */
const TEACACHE_DEGREE = 4;

class FlagError extends Error {}

interface Settings {
  model: string;
  strategy: CalibratedStrategy;
  runs: number;
  seed: number;
  prompts: string[] | null;
  request: Pick<RequestInput, "sampler" | "steps" | "guidance" | "shift" | "eta">;
}

function integer(name: string, raw: string | undefined, fallback: number, min = 1, why = ""): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new FlagError(`--${name} ${raw}: must be an integer >= ${min}${why}`);
  }
  return value;
}

function parse(args: string[]): Settings {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      strategy: { type: "string" },
      sampler: { type: "string" },
      steps: { type: "string" },
      runs: { type: "string" },
      guidance: { type: "string" },
      prompt: { type: "string", multiple: true },
      seed: { type: "string" },
    },
  });
  if (!values.model) throw new FlagError("--model DIR is required (a model directory)");
  const strategy = values.strategy as CalibratedStrategy;
  if (!CALIBRATED_STRATEGIES.includes(strategy)) {
    throw new FlagError(
      `--strategy ${values.strategy ?? "(missing)"}: one of ${CALIBRATED_STRATEGIES.join(", ")}`,
    );
  }
  const guidance = values.guidance === undefined ? undefined : Number(values.guidance);
  if (guidance !== undefined && !Number.isFinite(guidance)) {
    throw new FlagError(`--guidance ${values.guidance}: must be a number`);
  }
  return {
    model: values.model,
    strategy,
    runs: integer("runs", values.runs, 4),
    seed: integer("seed", values.seed, 1, 0),
    prompts: values.prompt ?? null,
    request: {
      sampler: values.sampler,
      steps: values.steps === undefined
        ? undefined
        : integer("steps", values.steps, 0, 2, " (a calibration compares consecutive steps)"),
      guidance,
      // The request defaults of samplingSchema: the schedule every uncached request runs.
      shift: 1,
      eta: 0,
    },
  };
}

/** Text models: the given prompts, else the directory's training phrasings (never its held-out ones). */
async function promptsFor(card: ModelCard, given: string[] | null, runs: number): Promise<string[] | null> {
  if (card.classes) return null;
  if (given) return given;
  try {
    const json = JSON.parse(await Deno.readTextFile(`${card.dir}/prompts.json`)) as {
      train?: { prompt: string }[];
    };
    const train = json.train?.map((t) => t.prompt) ?? [];
    if (train.length > 0) return Array.from({ length: runs }, (_, i) => train[(i * 37) % train.length]);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  throw new FlagError(`${card.dir} is a text model without prompts.json: give --prompt TEXT (one or more)`);
}

function entryFrom(
  strategy: CalibratedStrategy,
  runs: RunFigures[],
  key: Omit<CalibrationEntry, "strategy">,
) {
  if (strategy === "magcache") {
    const steps = runs[0].magRatios.length;
    const mag_ratios = Array.from({ length: steps }, (_, s) => mean(runs.map((r) => r.magRatios[s])));
    return { strategy, ...key, mag_ratios } as CalibrationEntry;
  }
  const pairs = runs.flatMap((r) => r.teacachePairs);
  return { strategy, ...key, coefficients: fitPolynomial(pairs, TEACACHE_DEGREE) } as CalibrationEntry;
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

async function main(): Promise<number> {
  const settings = parse(Deno.args);
  const card = await readModelCard(settings.model);
  const prompts = await promptsFor(card, settings.prompts, settings.runs);
  const requests = Array.from({ length: settings.runs }, (_, i) =>
    resolveRequest(card, {
      ...settings.request,
      cache: "none",
      seed: settings.seed + i,
      ...(card.classes
        ? { labels: [i % card.classes.names.length] }
        : { prompts: [prompts![i % prompts!.length]] }),
    }));
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const pipeline = await loadPipeline(ctx, card);
  const figures: RunFigures[] = [];
  try {
    for (const [i, request] of requests.entries()) {
      const recorder = new CalibrationRecorder(ctx);
      try {
        await pipeline.run(request, { strategy: recorder });
        const run = recorder.figures();
        if (!run) throw new Error("calibrate: the run forwarded nothing");
        if (settings.strategy === "teacache" && run.teacachePairs.length === 0) {
          throw new Error(`${card.dir}: this model's block list exposes no modulated input for TeaCache`);
        }
        figures.push(run);
        console.error(`calibrate: run ${i + 1}/${requests.length} (seed ${request.seed})`);
      } finally {
        recorder.release();
      }
    }
  } finally {
    pipeline.release();
  }
  const { sampler, steps } = requests[0];
  const entry = entryFrom(settings.strategy, figures, {
    sampler,
    steps,
    runs: figures.length,
    created: new Date().toISOString(),
  });
  const path = `${card.dir}/${CALIBRATION_FILE}`;
  const name = modelName(card.dir);
  const existing = card.calibration?.file ?? null;
  // A file made for another model is replaced, not merged into: its entries describe that model.
  const kept = existing?.model === name ? existing : null;
  const file = withCalibration(kept, name, entry);
  await writeFileAtomically(path, new TextEncoder().encode(JSON.stringify(file, null, 2) + "\n"));
  console.log(JSON.stringify(entry));
  console.error(`calibrate: wrote ${settings.strategy} for ${sampler} at ${steps} steps into ${path}`);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (!(e instanceof FlagError || e instanceof WeightsError || e instanceof RequestError)) throw e;
    console.error(e.message);
    Deno.exit(2);
  }
}
