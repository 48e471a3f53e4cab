// deno task bench:kernels [--json] [--only name,name]: every kernel family against its naive variant (and
// matmul against tfjs-backend-webgpu) on the adapter at hand, one run.
import { acquireGpuOrExplain } from "./acquire_gpu.ts";
import type { BenchRow, BenchSuite } from "./bench/harness.ts";
import { attentionBench } from "./bench/attention.ts";
import { embeddingBench } from "./bench/embedding.ts";
import { matmulBench } from "./bench/matmul.ts";
import { normBench } from "./bench/norm.ts";
import { residualDiffBench } from "./bench/residual_diff.ts";

const SUITES: BenchSuite[] = [residualDiffBench, embeddingBench, normBench, matmulBench, attentionBench];

function parseArgs(args: string[]): { json: boolean; only: Set<string> | null } {
  const json = args.includes("--json");
  const i = args.indexOf("--only");
  const only = i >= 0 ? new Set((args[i + 1] ?? "").split(",").filter(Boolean)) : null;
  const known = new Set(SUITES.map((s) => s.name));
  for (const name of only ?? []) {
    if (!known.has(name)) {
      console.error(`--only: unknown suite "${name}"; known: ${[...known].join(", ")}`);
      Deno.exit(2);
    }
  }
  return { json, only };
}

function formatRow(row: BenchRow & { adapter: string }): string {
  const rate = row.gflops === null ? "" : `${row.gflops.toFixed(2)} GFLOP/s`;
  const err = row.maxAbsErr === null ? "" : `maxAbsErr ${row.maxAbsErr.toExponential(2)}`;
  return [
    row.kernel.padEnd(28),
    row.shape.padEnd(26),
    `${row.ms.toFixed(3)} ms`.padStart(12),
    rate.padStart(16),
    err,
    row.note ?? "",
  ]
    .join("  ").trimEnd();
}

async function main(): Promise<void> {
  const { json, only } = parseArgs(Deno.args);
  const ctx = await acquireGpuOrExplain();
  if (!ctx) Deno.exit(1);
  const adapter = `${ctx.gpu.info.adapter} (${ctx.gpu.info.backend})`;
  if (!json) console.log(`adapter: ${adapter}`);
  for (const suite of SUITES) {
    if (only && !only.has(suite.name)) continue;
    await suite.run(ctx, (row) => {
      const full = { ...row, adapter };
      console.log(json ? JSON.stringify(full) : formatRow(full));
    });
  }
  ctx.destroy();
}

if (import.meta.main) await main();
