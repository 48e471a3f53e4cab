// deno task bench:flux on the tiny FLUX and text-encoder fixtures (in FluxPipeline's folder names): it runs
// through, reports every figure it promises, extrapolates to FLUX.1's 19 + 38 blocks at 1024x1024 and the
// text encoders' full depths, and prints them as one two-column table with its method; bad flags exit 2
// naming the flag. No --python: PyTorch is not on every test machine, so its rows say they were not run.
import assert from "node:assert/strict";
import type { FluxBenchReport } from "../../src/cli/bench/flux_report.ts";
import { fluxTable } from "../../src/cli/bench/flux_table.ts";
import { copyTree, withTempDir } from "../support/temp.ts";

async function benchFlux(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-read", "--allow-env", "--allow-run", "src/cli/bench_flux.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr).trim() };
}

async function tinyModel(dir: string): Promise<void> {
  await copyTree("tests/fixtures/flux/transformer-dev", `${dir}/transformer`);
  await copyTree("tests/fixtures/text/clip-a", `${dir}/text_encoder`);
  await copyTree("tests/fixtures/text/t5-a", `${dir}/text_encoder_2`);
}

const TINY = ["--size", "32", "--text-tokens", "8", "--t5-tokens", "16"];

const positive = (value: unknown, name: string) =>
  assert.ok(typeof value === "number" && value > 0, `${name} = ${value}`);

async function runTiny(): Promise<FluxBenchReport> {
  let report: FluxBenchReport | undefined;
  await withTempDir(async (dir) => {
    await tinyModel(dir);
    const result = await benchFlux(["--model", dir, ...TINY, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    report = JSON.parse(result.stdout);
  });
  return report!;
}

let tiny: Promise<FluxBenchReport> | undefined;
/** The tiny run, made once for the two tests that read it: a run is most of this file's time. */
const tinyReport = () => tiny ??= runTiny();

Deno.test("bench:flux at a tiny config: every figure, the extrapolated model and both encoders", async () => {
  const report = await tinyReport();
  assert.match(report.adapter, /\S/);
  positive(report.matmulKernelGflops, "matmulKernelGflops");
  const { flux, clip, t5 } = report;
  assert.deepEqual(flux.loadedBlocks, { double: 2, single: 3 });
  assert.equal(flux.shape.imageTokens, 4);
  for (const kind of ["double", "single"] as const) {
    for (
      const field of ["seconds", "attentionSeconds", "modulationSeconds", "gflops", "shareOfKernel"] as const
    ) {
      positive(flux[kind][field], `${kind}.${field}`);
    }
    assert.equal(flux[kind].vsTorch, null);
  }
  assert.deepEqual(flux.full.blocks, { double: 19, single: 38 });
  assert.equal(flux.full.imageTokens, 4096);
  positive(flux.full.stepSeconds, "full.stepSeconds");
  positive(flux.full.memory.activationBytes, "full.memory.activationBytes");
  // The fixture is stored in BF16: the shape count the extrapolation uses equals what the loader held.
  assert.equal(flux.full.memory.loadedWeightBytesFromShapes, flux.loadedWeightBytes);
  assert.ok(flux.full.memory.weightBytes > flux.loadedWeightBytes);
  assert.deepEqual([clip.tokens, clip.layers, clip.fullLayers], [77, 2, 12]);
  assert.deepEqual([t5.tokens, t5.layers, t5.fullLayers], [16, 3, 24]);
  for (const [name, encoder] of [["clip", clip], ["t5", t5]] as const) {
    positive(encoder.layerGflops, `${name}.layerGflops`);
    assert.ok(encoder.fullForwardSeconds > encoder.forwardSeconds, name);
  }
  assert.equal(report.torch, null);
  assert.equal(report.errors, null);
});

Deno.test("bench:flux's table: two columns naming the adapter, every row, then its method", async () => {
  const [table, method] = fluxTable(await tinyReport()).split("\n\nMethod:\n");
  const rows = table.split("\n").map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim()));
  assert.ok(rows.every((cells) => cells.length === 2), table);
  assert.deepEqual(rows[0], ["measured in one run", "figure"]);
  const figure = (label: RegExp) => rows.find(([l]) => label.test(l))?.[1];
  assert.match(figure(/^adapter$/)!, /\S/);
  assert.match(figure(/^double-stream block, 4 image \+ 8 text tokens$/)!, /^\d\S* s$/);
  assert.match(figure(/^single-stream block/)!, /^\d\S* s$/);
  assert.match(figure(/^matmul kernel/)!, /GFLOP\/s$/);
  assert.match(
    figure(/^FLUX.1 step at 1024x1024 \(19 double \+ 38 single blocks, 4096 \+ 8 tokens\)/)!,
    / s$/,
  );
  assert.match(figure(/^GPU memory at 1024x1024/)!, /^\S+ GB \+ \S+ GB = \S+ GB$/);
  assert.match(figure(/^CLIP .*77 tokens, 2 layers: forward$/)!, / s$/);
  assert.match(figure(/^at 24 layers, extrapolated/)!, /\(no --python\)$/);
  assert.equal(figure(/^engine vs PyTorch, the loaded model's output$/), "(no --python)");
  assert.match(method, /^- repeat: /);
  assert.match(method, /r\^2/);
});

/** Each is refused before a model is read, except the missing directory, which is named with its file. */
const BAD_FLAGS: [string[], string][] = [
  [["--model", "x", "--size", "48"], "--size 48: must be a multiple of 32"],
  [["--model", "x", "--repeat", "0"], "--repeat 0: must be a positive integer"],
  [["--model", "x", "--t5-tokens", "x"], "--t5-tokens x: must be a positive integer"],
  [["--model", "x", "--bogus"], "Unknown option '--bogus'"],
  [[], "--model DIR is required (a directory of tools/flux_random_blocks.py)"],
  [["--model", "/nowhere"], "--model: /nowhere/transformer/config.json: file not found"],
];

for (const [args, message] of BAD_FLAGS) {
  Deno.test(`bench:flux ${args.join(" ") || "(no flags)"}: exit 2 naming the flag`, async () => {
    const result = await benchFlux(args);
    assert.equal(result.code, 2);
    assert.equal(result.stderr.split("\n")[0], message);
  });
}

Deno.test("bench:flux --python that does not exist: exit 2 before the engine's side", () =>
  withTempDir(async (dir) => {
    await tinyModel(dir);
    const result = await benchFlux(["--model", dir, "--python", `${dir}/no-python`]);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, `--python ${dir}/no-python: no such program`);
  }));
