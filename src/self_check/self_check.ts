// Start-up check that the adapter computes what the CPU references compute: one tiny case per kernel family
// (src/self_check/cases.ts), so a driver that miscompiles a kernel is caught before it serves an image.
import type { GpuContext } from "../gpu/context.ts";
import { runSelfCheckCase, type SelfCheckResult } from "./case.ts";
import { SELF_CHECK_CASES } from "./cases.ts";

export type { SelfCheckResult };

/** Runs every case in turn; a case that cannot run at all (a kernel that fails to compile) throws. */
export async function selfCheck(ctx: GpuContext): Promise<SelfCheckResult[]> {
  const results: SelfCheckResult[] = [];
  for (const c of SELF_CHECK_CASES) results.push(await runSelfCheckCase(ctx, c));
  return results;
}
