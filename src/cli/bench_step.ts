// deno task bench:step [--model weights/mnist-dit] [--guidance 3] [--repeat 5] [--json]
// What a computed and a cached step of DBCache F1B0 cost on this adapter, on both decision paths
// (src/cli/bench/step_cost.ts): per kind the median [min, max] over repeats of the wall-clock and process
// CPU milliseconds of a step, each repeat measuring every kind in an order that rotates, so that the load
// of a shared machine hits them alike; then where a cached step's GPU time goes, part by part, and the
// issue's target: a cached step costs at most the blocks it runs plus 5% of a computed step.
import { parseArgs } from "node:util";
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import { chooseDecisionPath, type DecisionPath, measureDecisionCosts } from "../cache/decision_path.ts";
import { readModelCard } from "../pipeline/model_card.ts";
import { loadPipeline } from "../pipeline/pipelines/load.ts";
import { type Spread, spread } from "./bench/cache_table.ts";
import { marginalMs } from "./bench/harness.ts";
import { cachedStepParts, dbcacheStep, oneSubmit, perStep, type StepCommands } from "./bench/step_cost.ts";

/** Steps per timed loop: about this many milliseconds of work, at least two steps. */
const LOOP_MS = 1500;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "weights/mnist-dit" },
      guidance: { type: "string", default: "3" },
      repeat: { type: "string", default: "5" },
      json: { type: "boolean", default: false },
    },
  });
  const repeat = Number(values.repeat);
  const guidance = Number(values.guidance);
  if (!Number.isInteger(repeat) || repeat < 1 || !(guidance >= 0)) {
    console.error("--repeat must be a positive integer, --guidance a number >= 0");
    return 2;
  }
  const card = await readModelCard(values.model!);
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const costs = await measureDecisionCosts(ctx);
  const pipeline = await loadPipeline(ctx, card);
  const graph = pipeline.denoiser.graph(pipeline.guided(guidance) ? 2 : 1);
  const channels = card.streamWidth;
  const captured: { release(): void }[] = [];
  const capture = async (path: DecisionPath, cached: boolean) => {
    const c = await dbcacheStep(ctx, graph, channels, path, cached);
    captured.push(c);
    return c.step;
  };
  const kinds: Record<string, StepCommands> = {
    // NoCache and generate.ts encode the prologue, each block and the epilogue in calls of their own.
    "computed (no cache)": oneSubmit(graph.prologue, ...graph.blocks, graph.epilogue),
    "computed, GPU path": await capture("gpu", false),
    "computed, readback path": await capture("readback", false),
    "cached, GPU path": await capture("gpu", true),
    "cached, readback path": await capture("readback", true),
    "cached floor (prologue + F + epilogue)": oneSubmit(graph.prologue, graph.blocks[0], graph.epilogue),
  };
  const names = Object.keys(kinds);
  // One untimed loop each: compiles, warms, and sizes the timed loops.
  const steps: Record<string, number> = {};
  for (const name of names) {
    const [wall] = await perStep(ctx, kinds[name], 1);
    steps[name] = Math.max(2, Math.round(LOOP_MS / Math.max(wall, 1)));
  }
  const timed: Record<string, [number, number][]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < repeat; r++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(k + r) % names.length];
      timed[name].push(await perStep(ctx, kinds[name], steps[name]));
    }
    if (!values.json) console.error(`repeat ${r + 1}/${repeat}`);
  }
  const rows = names.map((name) => ({
    kind: name,
    wall: spread(timed[name].map(([w]) => w)),
    cpu: spread(timed[name].map(([, c]) => c)),
  }));
  const parts = await cachedStepParts(ctx, graph, kinds["cached, GPU path"]);
  // The blocks a cached step runs (F), as a share of a computed step's GPU time.
  const fBlockMs = await marginalMs(ctx, graph.blocks[0], { budgetMs: 1500 });
  const computedMs = await marginalMs(ctx, kinds["computed (no cache)"].segments[0].flat(), {
    budgetMs: 1500,
  });
  const fShare = fBlockMs / computedMs;
  // The skipped span is most of the compute path, which a computed step runs indirectly.
  const span = parts["skipped span: empty indirect dispatches"]?.commands ?? 0;
  const path = chooseDecisionPath(costs, { emptyDispatches: span, indirectDispatches: span, readbacks: 1 });
  const adapter = `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`;
  if (values.json) {
    const summary = { adapter, model: card.dir, batch: graph.batch, repeat, costs, path, fShare };
    console.log(JSON.stringify({ ...summary, rows, parts }));
  } else {
    print({ adapter, model: card.dir, batch: graph.batch, blocks: graph.blocks.length, repeat, rows, parts });
    console.log(
      `\nThe F block is ${fBlockMs.toFixed(1)} ms of a computed step's ${
        computedMs.toFixed(1)
      } ms of GPU time ` +
        `(${pct(fBlockMs, computedMs)}). A cached step beyond it (target: at most 5% of a computed step):`,
    );
    const computed = rows[0];
    for (const row of rows.filter((x) => x.kind.startsWith("cached,"))) {
      const beyond = (v: Spread, c: Spread) => pct(v.median / c.median - fShare, 1);
      console.log(
        `- ${row.kind}: ${beyond(row.wall, computed.wall)} wall, ${beyond(row.cpu, computed.cpu)} CPU`,
      );
    }
    console.log(
      `\nDecision costs measured at start-up: an empty indirect dispatch ${
        costs.emptyDispatchMs.toFixed(4)
      } ms, ` +
        `an indirect one that runs ${
          costs.indirectExtraMs.toFixed(4)
        } ms more than a direct one, a readback ` +
        `${costs.readbackMs.toFixed(2)} ms: this span takes the ${path} path.`,
    );
  }
  for (const c of captured) c.release();
  pipeline.release();
  ctx.destroy();
  return 0;
}

const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(1)}%`;
const ms = (s: Spread) => `${s.median.toFixed(1)} [${s.min.toFixed(1)}, ${s.max.toFixed(1)}]`;

function print(r: {
  adapter: string;
  model: string;
  batch: number;
  blocks: number;
  repeat: number;
  rows: { kind: string; wall: Spread; cpu: Spread }[];
  parts: Record<string, { commands: number; ms: number }>;
}): void {
  const computed = r.rows[0];
  console.log(
    `${r.model} (${r.blocks} blocks, batch ${r.batch}), DBCache F1B0, one submit per step, ${r.repeat} ` +
      `repeats interleaved; ${r.adapter}\n`,
  );
  console.log(
    "| step | wall ms, median [min, max] | CPU ms, median [min, max] | of a computed step (wall, CPU) |",
  );
  console.log("| :--- | ---: | ---: | ---: |");
  for (const row of r.rows) {
    const share = `${pct(row.wall.median, computed.wall.median)}, ${
      pct(row.cpu.median, computed.cpu.median)
    }`;
    console.log(`| ${row.kind} | ${ms(row.wall)} | ${ms(row.cpu)} | ${share} |`);
  }
  console.log("\nA cached step on the GPU path, part by part (GPU ms in one submit, marginal):\n");
  for (const [name, p] of Object.entries(r.parts)) {
    console.log(`- ${name}: ${p.commands} commands, ${p.ms.toFixed(2)} ms`);
  }
}

if (import.meta.main) Deno.exit(await main());
