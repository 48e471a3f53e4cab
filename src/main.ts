// deno task serve. Until the HTTP server lands this acquires the GPU, compiles and self-checks the kernels
// and prints what it found; it is the only file that reads the environment and sets the exit code.
import { acquireGpuOrExplain } from "./cli/acquire_gpu.ts";
import { selfCheck } from "./gpu/self_check.ts";

async function main(): Promise<number> {
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  console.log(
    JSON.stringify({
      adapter: ctx.gpu.info.adapter,
      backend: ctx.gpu.info.backend,
      features: ctx.gpu.info.features,
    }),
  );
  const results = await selfCheck(ctx);
  for (const r of results) {
    console.log(`${r.ok ? "ok  " : "FAIL"} ${r.kernel}: max |diff| ${r.maxAbsErr.toExponential(2)}`);
  }
  ctx.destroy();
  return results.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
