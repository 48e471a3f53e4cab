// `deno task bench:flux`'s report as BENCHMARKS.md records it: one markdown table of the run's figures (the
// same rows with or without PyTorch, whose figures are then marked absent), then how FLOPs, the whole model
// and the full-depth encoders are derived.
import { markdownTable } from "markdown-table";
import type { FluxBenchReport } from "./flux_report.ts";
import type { OutputError } from "./reference_error.ts";

const NO_TORCH = "(no --python)";

/** Four significant digits, whole seconds from 1000 on (no exponent). */
const seconds = (s: number) => `${s >= 1000 ? s.toFixed(0) : s.toPrecision(4)} s`;
const gb = (bytes: number) => `${(bytes / 1e9).toFixed(3)} GB`;
const gflop = (flops: number) => (flops / 1e9).toFixed(1);
const percent = (share: number) => `${(share * 100).toFixed(0)}%`;
const versus = (s: number, ratio: number) => `${seconds(s)} (engine: **${ratio.toFixed(1)}x**)`;
const error = (e: OutputError | undefined) =>
  e ? `${e.maxAbs.toExponential(1)} (${e.relative.toExponential(1)})` : NO_TORCH;

type Row = [string, string];

function blockRows(r: FluxBenchReport, kind: "double" | "single", name: string): Row[] {
  const b = r.flux[kind];
  const { imageTokens, textTokens } = r.flux.shape;
  return [
    [`${name} block, ${imageTokens} image + ${textTokens} text tokens`, seconds(b.seconds)],
    [`its GFLOP/s (${gflop(b.flops)} GFLOP counted from shapes, see below)`, b.gflops.toFixed(2)],
    [
      `its joint attention alone (${gflop(b.attentionFlops)} GFLOP)`,
      `${seconds(b.attentionSeconds)} (${b.attentionGflops.toFixed(2)} GFLOP/s)`,
    ],
  ];
}

function torchRows(r: FluxBenchReport): Row[] {
  const t = r.torch;
  const side = t ? `diffusers ${t.diffusers} on PyTorch ${t.torch} CPU (${t.threads} threads)` : "diffusers";
  const row = (kind: "double" | "single"): Row => {
    const b = r.flux[kind];
    return [
      `${side}, same ${kind}-stream block with its modulation linear(s) (engine: block + modulation)`,
      b.torchSeconds && b.vsTorch ? versus(b.torchSeconds, b.vsTorch) : NO_TORCH,
    ];
  };
  const e = r.errors ?? {};
  const streams = (stage: string) => `${error(e[`${stage}.image`])}, ${error(e[`${stage}.text`])}`;
  return [
    row("double"),
    row("single"),
    [
      "engine vs PyTorch after the double-stream block, image and text: max abs err (/ max abs)",
      streams("double"),
    ],
    ["engine vs PyTorch after the single-stream block, image and text", streams("single")],
    ["engine vs PyTorch, the loaded model's output", error(e.sample)],
  ];
}

function fullModelRows(r: FluxBenchReport): Row[] {
  const f = r.flux.full;
  const b = f.breakdown;
  const m = f.memory;
  const target = `${f.size}x${f.size} (${f.blocks.double} double + ${f.blocks.single} single blocks, ` +
    `${f.imageTokens} + ${f.textTokens} tokens)`;
  const d = r.flux.width;
  return [
    [`FLUX.1 step at ${target}, extrapolated`, seconds(f.stepSeconds)],
    [
      "prologue + double blocks + single blocks + epilogue",
      [b.prologue, b.doubleBlocks, b.singleBlocks, b.epilogue].map((s) => s.toFixed(1)).join(" + ") + " s",
    ],
    [
      `its GFLOP/s (${gflop(f.flopsPerBlock * (f.blocks.double + f.blocks.single))} GFLOP)`,
      f.stepGflops.toFixed(2),
    ],
    [
      `GPU memory at ${f.size}x${f.size}, extrapolated: weights (BF16 matrices, f32 vectors) + activations`,
      `${gb(m.weightBytes)} + ${gb(m.activationBytes)} = ${gb(m.totalBytes)}`,
    ],
    [
      `its largest activation (MLP [${f.imageTokens}, ${
        4 * d
      }] f32) / this adapter's maxStorageBufferBindingSize`,
      `${gb(m.largestActivationBytes)} / ${gb(r.maxStorageBufferBindingSize)}`,
    ],
  ];
}

function encoderRows(name: string, e: FluxBenchReport["clip"], errors: [string, OutputError | undefined][]) {
  const t = e.torch;
  const rows: Row[] = [
    [
      `${name} (${e.width} wide, ${e.heads} heads), ${e.tokens} tokens, ${e.layers} layers: forward`,
      seconds(e.forwardSeconds),
    ],
    [
      `one layer (${gflop(e.layerFlops)} GFLOP)`,
      `${seconds(e.layerSeconds)} (${e.layerGflops.toFixed(2)} GFLOP/s)`,
    ],
    [
      "transformers on PyTorch: forward; one layer",
      t && e.forwardVsTorch && e.layerVsTorch
        ? `${versus(t.forwardSeconds, e.forwardVsTorch)}; ${versus(t.layerSeconds, e.layerVsTorch)}`
        : NO_TORCH,
    ],
    [
      `at ${e.fullLayers} layers, extrapolated: engine; PyTorch`,
      `${seconds(e.fullForwardSeconds)}; ${t ? seconds(t.fullForwardSeconds) : NO_TORCH}`,
    ],
    [
      `engine vs transformers: ${errors.map(([n]) => n).join(", ")}`,
      errors.map(([, err]) => error(err)).join(", "),
    ],
  ];
  return rows;
}

export function fluxTable(r: FluxBenchReport): string {
  const e = r.errors ?? {};
  const f = r.flux;
  const k = f.kernel;
  const rows: Row[] = [
    ["adapter", r.adapter],
    ...blockRows(r, "double", "double-stream"),
    ...blockRows(r, "single", "single-stream"),
    ["matmul kernel 1024^3 (f32 weights) in the same run", `${r.matmulKernelGflops.toFixed(2)} GFLOP/s`],
    [
      `matmul kernel at the blocks' largest linear, [${k.rows}, ${k.inFeatures}] x [${k.inFeatures}, ` +
      `${k.outFeatures}] BF16 weights`,
      `${seconds(k.seconds)} (${k.gflops.toFixed(2)} GFLOP/s)`,
    ],
    [
      "double block / that kernel; single block / that kernel",
      `${percent(f.double.shareOfKernel)}; ${percent(f.single.shareOfKernel)}`,
    ],
    ...torchRows(r),
    ...fullModelRows(r),
    ...encoderRows("CLIP", r.clip, [
      ["last_hidden_state", e["clip.last_hidden_state"]],
      ["pooler_output", e["clip.pooler_output"]],
    ]),
    ...encoderRows("T5", r.t5, [["last_hidden_state", e["t5.last_hidden_state"]]]),
    [
      `loading the transformer's ${f.loadedBlocks.double} + ${f.loadedBlocks.single} blocks`,
      seconds(f.loadSeconds),
    ],
  ];
  const table = markdownTable([["measured in one run", "figure"], ...rows], { align: ["l", "r"] });
  const method = [
    `repeat: each figure is the median of ${r.repeat} waited-on submit(s) after a warm-up`,
    f.flopsMethod,
    ...f.full.method,
    r.textEncodersMethod,
  ];
  return `${table}\n\nMethod:\n${method.map((line) => `- ${line}`).join("\n")}`;
}
