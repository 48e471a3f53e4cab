// deno task bench:pareto [--model DIR] [--families "MagCache,TeaCache,..."] [--tune-images 10] [--keep 2]
//   [--images 100] [--repeat 3] [--timed-images 10] [--checkpoint FILE] [--chart FILE] [--retime]
//   [--tuning-only] [--json]
// Speed against quality for every strategy family's main knob (src/cli/bench/pareto_sweep.ts), in two passes:
//   tuning: every point of every family on --tune-images images of the tuning seeds (1, 2, ...), one run;
//     each family's frontier (the points no other point of it beats on both speedup and PSNR) gives the --keep
//     points around 30 dB, where the targets are stated;
//   held-out: the kept points on --images images of the held-out seeds (1001, ...), whose quality (PSNR and
//     SSIM against the uncached image, the digit classifier's accuracy) is the table's, timed --repeat times
//     (later repeats over the first --timed-images images), each speedup the median with its spread.
// Prints the held-out table with each family's frontier and the overall one, compares the new methods with
// the reference's at equal speedup, and draws the chart (SVG). Both passes are resumable with --checkpoint;
// --retime times the finished held-out pass again with the current code (its quality records stay);
// --tuning-only prints the tuning pass of a checkpoint (and its chart) without touching the checkpoint.
import { parseArgs } from "node:util";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import type { BenchConfig } from "./bench/cache_configs.ts";
import { markdown, type Row, summarise } from "./bench/cache_table.ts";
import { type ImageSetProgress, runImageSet, subjects } from "./bench/image_set.ts";
import { type ChartPoint, paretoSvg } from "./bench/pareto_chart.ts";
import {
  FAMILY_NAMES,
  familyFrontiers,
  overheadConfigs,
  paretoFrontier,
  REFERENCE_FAMILIES,
  type SweepConfig,
  sweepConfigs,
} from "./bench/pareto_sweep.ts";
import type { GpuContext } from "../gpu/context.ts";
import { DigitClassifier } from "../model/classifier.ts";
import { type ModelCard, readModelCard } from "../pipeline/model_card.ts";
import { loadPipeline } from "../pipeline/pipelines/load.ts";

const TUNING_SEED = 1;
const HELD_OUT_SEED = 1001;
/** Class models' sampling (the embedded model's tables); text models take their card's defaults. */
const CLASS_DEFAULTS = { steps: 28, guidance: 3 };

interface Settings {
  model: string;
  families: string[];
  tuneImages: number;
  images: number;
  repeat: number;
  timedImages: number;
  /** Points per family the held-out pass runs. */
  keep: number;
  steps: number;
  guidance: number;
}

interface Checkpoint {
  settings: Settings;
  tuning: ImageSetProgress;
  /** Names of the points the held-out pass runs, once the tuning pass chose them. */
  selected: string[] | null;
  heldOut: ImageSetProgress | null;
  /** The decision-overhead pass, after the held-out one (absent in checkpoints written before it existed). */
  overhead?: ImageSetProgress;
}

function parse(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string", default: "weights/mnist-dit" },
      families: { type: "string" },
      "tune-images": { type: "string", default: "10" },
      images: { type: "string", default: "100" },
      repeat: { type: "string", default: "3" },
      "timed-images": { type: "string", default: "10" },
      keep: { type: "string", default: "2" },
      checkpoint: { type: "string" },
      chart: { type: "string" },
      json: { type: "boolean", default: false },
      retime: { type: "boolean", default: false },
      "tuning-only": { type: "boolean", default: false },
    },
  });
  return values;
}

function settingsFor(values: ReturnType<typeof parse>, card: ModelCard): Settings {
  const count = (name: "tune-images" | "images" | "repeat" | "timed-images" | "keep") => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} ${values[name]}: must be an integer >= 1`);
    return v;
  };
  const families = values.families?.split(",").map((f) => f.trim()) ?? FAMILY_NAMES;
  const unknown = families.filter((f) => !FAMILY_NAMES.includes(f));
  if (unknown.length > 0) {
    throw new Error(`--families: unknown ${unknown.join(", ")}; valid: ${FAMILY_NAMES.join(", ")}`);
  }
  const defaults = card.classes ? CLASS_DEFAULTS : card.defaults;
  return {
    model: values.model!,
    families,
    tuneImages: count("tune-images"),
    images: count("images"),
    repeat: count("repeat"),
    timedImages: count("timed-images"),
    keep: count("keep"),
    ...defaults,
  };
}

const emptyProgress = (configs: number): ImageSetProgress => ({
  records: Array.from({ length: configs }, () => []),
  grid: Array.from({ length: configs }, () => []),
  next: { repeat: 0, image: 0 },
});

async function loadCheckpoint(
  path: string | undefined,
  settings: Settings,
  configs: number,
): Promise<Checkpoint> {
  const fresh = { settings, tuning: emptyProgress(configs), selected: null, heldOut: null };
  if (!path) return fresh;
  try {
    const saved = JSON.parse(await Deno.readTextFile(path)) as Checkpoint;
    if (JSON.stringify(saved.settings) !== JSON.stringify(settings)) {
      throw new Error(`${path} holds a run with other settings; remove it or give another --checkpoint`);
    }
    return saved;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return fresh;
    throw e;
  }
}

const adapterOf = (ctx: GpuContext) => `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`;

/** PSNR the targets are stated at: the points kept for the held-out pass bracket it. */
const TARGET_PSNR = 30;

/**
 * Per family, from its tuning frontier, the `keep` points nearest the target: the fastest at or above
 * TARGET_PSNR and the faster ones after it (or the slowest, where none reaches it), by name after the baseline.
 */
function choose(sweep: readonly SweepConfig[], rows: readonly Row[], keep: number): string[] {
  const points = rows.slice(1).map((r, i) => ({ ...sweep[i + 1], speedup: r.speedup.median, psnr: r.psnr }));
  const kept = [...familyFrontiers(points).values()].flatMap((frontier) => {
    const good = frontier.filter((p) => p.psnr >= TARGET_PSNR).length;
    const start = Math.max(0, good - 1);
    return frontier.slice(start, start + keep).map((p) => p.name);
  });
  return [sweep[0].name, ...sweep.slice(1).filter((c) => kept.includes(c.name)).map((c) => c.name)];
}

/** Linear interpolation of a frontier's PSNR at `speedup`; null outside the speedups it covers. */
function psnrAt(frontier: readonly { speedup: number; psnr: number }[], speedup: number): number | null {
  for (let i = 0; i + 1 < frontier.length; i++) {
    const [a, b] = [frontier[i], frontier[i + 1]];
    if (speedup >= a.speedup && speedup <= b.speedup) {
      return a.psnr + ((b.psnr - a.psnr) * (speedup - a.speedup)) / (b.speedup - a.speedup || 1);
    }
  }
  return frontier.length === 1 && frontier[0].speedup === speedup ? frontier[0].psnr : null;
}

/** Where the new families' frontier beats the reference's at the same speedup (at 2x or more), and by how much. */
function comparison(points: readonly { family: string; name: string; speedup: number; psnr: number }[]) {
  const reference = paretoFrontier(
    points.filter((p) => (REFERENCE_FAMILIES as readonly string[]).includes(p.family)),
  );
  const fresh = points.filter((p) => !(REFERENCE_FAMILIES as readonly string[]).includes(p.family));
  const margins = fresh.flatMap((p) => {
    const ref = psnrAt(reference, p.speedup);
    return p.speedup >= 2 && ref !== null ? [{ ...p, margin: p.psnr - ref }] : [];
  });
  margins.sort((a, b) => b.margin - a.margin);
  return { reference, best: margins[0] ?? null };
}

/** Chart points of a pass' rows (after the baseline). */
function pointsOf(set: ChartPoint["set"], configs: readonly SweepConfig[], of: readonly Row[]): ChartPoint[] {
  return of.slice(1).map((r, i) => ({
    family: configs[i + 1].family,
    name: r.config,
    set,
    speedup: r.speedup.median,
    min: r.speedup.min,
    max: r.speedup.max,
    psnr: r.psnr,
  }));
}

async function main(): Promise<number> {
  let values, card: ModelCard, settings: Settings, checkpoint: Checkpoint, sweep: SweepConfig[];
  try {
    values = parse(Deno.args);
    card = await readModelCard(values.model!);
    settings = settingsFor(values, card);
    sweep = sweepConfigs(settings.steps, settings.families);
    checkpoint = await loadCheckpoint(values.checkpoint, settings, sweep.length);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const pipeline = await loadPipeline(ctx, card);
  const subjectsOf = await subjects(card);
  const classifier = subjectsOf.judged ? await DigitClassifier.load(ctx) : null;
  const { steps, guidance } = settings;
  const save = async () => {
    if (values.checkpoint) {
      await Deno.writeTextFile(`${values.checkpoint}.tmp`, JSON.stringify(checkpoint));
      await Deno.rename(`${values.checkpoint}.tmp`, values.checkpoint);
    }
  };
  const pass = (images: number, firstSeed: number, repeat: number, timedImages: number, label: string) => ({
    images,
    firstSeed,
    repeat,
    timedImages,
    subjects: subjectsOf,
    steps,
    guidance,
    trueCfg: 1,
    gridImages: 0,
    async saved(next: ImageSetProgress["next"]) {
      await save();
      if (!values.json) console.error(`${label}: repeat ${next.repeat + 1}, ${next.image}/${images} images`);
    },
  });
  // --retime: the held-out pass' timing again with this code (its images must come out the same bits), e.g.
  // after a change of decision path; its quality records stay.
  const retime = async (done: ImageSetProgress, configs: readonly BenchConfig[], timed: number) => {
    const timing: ImageSetProgress = {
      records: done.records.map((records) => records.slice(0, timed).map((r) => ({ ...r, seconds: [] }))),
      grid: configs.map(() => []),
      next: { repeat: 0, image: 0 },
    };
    await compile(configs);
    await runImageSet(ctx, pipeline, null, configs, timing, {
      ...pass(timed, HELD_OUT_SEED, settings.repeat, timed, "retime"),
      async saved() {},
    });
    timing.records.forEach((records, c) => records.forEach((r, i) => done.records[c][i].seconds = r.seconds));
    for (const records of done.records) {
      for (const r of records.slice(timed)) r.seconds = r.seconds.slice(0, 1);
    }
    await save();
  };
  // Every configuration's kernels compile on one untimed image before a pass times it.
  const compile = async (configs: readonly BenchConfig[]) => {
    await runImageSet(ctx, pipeline, null, configs, emptyProgress(configs.length), {
      ...pass(1, 0, 1, 1, "compile"),
      async saved() {},
    });
  };
  if (checkpoint.tuning.next.repeat < 1) await compile(sweep);
  await runImageSet(
    ctx,
    pipeline,
    classifier,
    sweep,
    checkpoint.tuning,
    pass(settings.tuneImages, TUNING_SEED, 1, settings.tuneImages, "tuning"),
  );
  const judged = (seed: number, n: number) => `seeds ${seed}..${seed + n - 1}`;
  const tuningRows = sweep.map((c, i) =>
    summarise(
      c,
      judged(TUNING_SEED, settings.tuneImages),
      checkpoint.tuning.records[i],
      checkpoint.tuning.records[0],
    )
  );
  if (values["tuning-only"]) {
    // Reads the checkpoint and writes nothing: a run may still be working on it.
    const chart = values.chart ?? `docs/pareto-${card.dir.split("/").pop()}-tuning.svg`;
    const title = `${card.dir}: speedup vs PSNR on the tuning ${judged(TUNING_SEED, settings.tuneImages)}`;
    await Deno.writeTextFile(chart, await paretoSvg(pointsOf("tuning", sweep, tuningRows), title));
    console.log(
      `${card.dir}: ${steps} steps, guidance ${guidance}, one image per request; the tuning pass (every swept ` +
        `point, ${judged(TUNING_SEED, settings.tuneImages)}, one run, timed on a shared machine); ${
          adapterOf(ctx)
        }\n`,
    );
    console.log(markdown(tuningRows, steps, 1));
    console.log(`\nChart: ${chart}`);
    return 0;
  }
  checkpoint.selected ??= choose(sweep, tuningRows, settings.keep);
  const selected = checkpoint.selected.map((name) => sweep.find((c) => c.name === name)!);
  checkpoint.heldOut ??= emptyProgress(selected.length);
  await save();
  await runImageSet(
    ctx,
    pipeline,
    classifier,
    selected,
    checkpoint.heldOut,
    pass(settings.images, HELD_OUT_SEED, settings.repeat, settings.timedImages, "held-out"),
  );
  if (values.retime) await retime(checkpoint.heldOut, selected, settings.timedImages);
  const overheads = overheadConfigs();
  if (values.retime || !checkpoint.overhead) checkpoint.overhead = emptyProgress(overheads.length);
  await compile(overheads);
  await runImageSet(
    ctx,
    pipeline,
    null,
    overheads,
    checkpoint.overhead,
    pass(settings.timedImages, HELD_OUT_SEED, settings.repeat, settings.timedImages, "decision overhead"),
  );
  const overhead = checkpoint.overhead;
  const overheadRows = overheads.map((c, i) =>
    summarise(c, judged(HELD_OUT_SEED, settings.timedImages), overhead.records[i], overhead.records[0])
  );
  const heldOut = checkpoint.heldOut;
  const rows = selected.map((c, i) =>
    summarise(c, judged(HELD_OUT_SEED, settings.images), heldOut.records[i], heldOut.records[0])
  );
  const points = pointsOf("held-out", selected, rows);
  const families = familyFrontiers(points);
  const overall = paretoFrontier(points).map((p) => p.name);
  const { best } = comparison(points);
  const adapter = adapterOf(ctx);
  const chart = values.chart ?? `docs/pareto-${card.dir.split("/").pop()}.svg`;
  await Deno.writeTextFile(
    chart,
    await paretoSvg(
      [...pointsOf("tuning", sweep, tuningRows), ...points],
      `${card.dir}: speedup vs PSNR (dashed: tuning ${judged(TUNING_SEED, settings.tuneImages)}; ` +
        `marks: held-out ${judged(HELD_OUT_SEED, settings.images)})`,
    ),
  );
  if (values.json) {
    for (const r of rows) {
      console.log(JSON.stringify({ ...r, adapter, frontier: overall.includes(r.config) }));
    }
  } else {
    console.log(
      `${card.dir}: ${steps} steps, guidance ${guidance}, one image per request; tuning ${
        judged(TUNING_SEED, settings.tuneImages)
      } (${sweep.length - 1} points), held-out ${judged(HELD_OUT_SEED, settings.images)} (${
        selected.length - 1
      } points kept), timing over the first ${settings.timedImages} images x ${settings.repeat} repeats; ${adapter}\n`,
    );
    const marked = rows.map((r) => ({
      ...r,
      config: overall.includes(r.config) ? `**${r.config}**` : r.config,
    }));
    console.log(markdown(marked, steps, settings.repeat));
    console.log(
      `\nThe tuning pass (every swept point, ${judged(TUNING_SEED, settings.tuneImages)}, one run):\n`,
    );
    console.log(markdown(tuningRows, steps, 1));
    console.log("\nEach family's held-out frontier (speedup x / PSNR dB):");
    for (const [family, frontier] of families) {
      const shown = frontier.map((p) =>
        `${p.speedup.toFixed(2)}x / ${Number.isFinite(p.psnr) ? p.psnr.toFixed(1) : "inf"}`
      );
      console.log(`- ${family}: ${shown.join(", ")}`);
    }
    console.log(
      best
        ? `\nBest new method over the reference frontier at equal speedup (>= 2x): ${best.name} at ${
          best.speedup.toFixed(2)
        }x, ${best.margin >= 0 ? "+" : ""}${best.margin.toFixed(1)} dB`
        : "\nNo new method's point lies at >= 2x within the speedups the reference frontier covers.",
    );
    console.log(
      `\nDecision overhead (every step measured and decided, none cached; ${
        judged(HELD_OUT_SEED, settings.timedImages)
      }, median of ${settings.repeat} [min, max] of the slowdown against the baseline):`,
    );
    for (const r of overheadRows.slice(1)) {
      const pct = (speedup: number) => `${(100 * (1 / speedup - 1)).toFixed(1)}%`;
      console.log(
        `- ${r.config}: ${pct(r.speedup.median)} [${pct(r.speedup.max)}, ${pct(r.speedup.min)}], ${
          r.readbacksPerImage.toFixed(1)
        } readbacks / image`,
      );
    }
    console.log(`\nChart: ${chart}`);
  }
  classifier?.release();
  pipeline.release();
  ctx.destroy();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
