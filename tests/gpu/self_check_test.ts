import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { selfCheck } from "../../src/self_check/self_check.ts";
import { runSelfCheckCase, selfCheckCase } from "../../src/self_check/case.ts";
import type { Tensor } from "../../src/gpu/tensor.ts";
import { axpy } from "../../src/ops/axpy.ts";
import { axpy as axpyRef } from "../../src/ref/axpy.ts";
import { gpuTest } from "../support/gpu.ts";

/** Every kernel family: the shader files but the bench's *_naive baselines and the common.wgsl prelude. */
function shaderFamilies(): string[] {
  return [...Deno.readDirSync(new URL("../../shaders/", import.meta.url))]
    .map((entry) => entry.name)
    .filter((name) => name.endsWith(".wgsl") && !name.endsWith("_naive.wgsl") && name !== "common.wgsl")
    .map((name) => name.slice(0, -".wgsl".length))
    .sort();
}

gpuTest("self-check: every kernel family runs and matches its CPU reference", async (ctx) => {
  const inUse = ctx.pool.stats().buffersInUse;
  const results = await selfCheck(ctx);
  const failed = results.filter((r) => !r.ok);
  assert.deepEqual(failed, [], "self-check cases over their tolerance");
  const covered = new Set(results.flatMap((r) => r.shaders));
  const missing = shaderFamilies().filter((family) => !covered.has(family));
  assert.deepEqual(
    missing,
    [],
    "shader families that no self-check case runs (add one to src/self_check/cases.ts)",
  );
  assert.equal(ctx.pool.stats().buffersInUse, inUse, "the self-check must release every tensor it made");
});

gpuTest("self-check: a wrong result or a reference of another length fails its case", async (ctx) => {
  const inputs = { x: [3, 5], y: [3, 5] };
  const build = (context: GpuContext, t: Record<"x" | "y", Tensor>) => axpy(context, t.x, t.y, { alpha: -1 });
  // The kernel computes y - x; y + x is off by 2|x|, far over the tolerance.
  const wrongSign = await runSelfCheckCase(
    ctx,
    selfCheckCase({ kernel: "axpy", inputs, build, reference: (v) => axpyRef(v.x, v.y, 1), tolerance: 1e-6 }),
  );
  assert.equal(wrongSign.ok, false);
  assert.ok(wrongSign.maxAbsErr > 0.1, `max |diff| ${wrongSign.maxAbsErr}`);
  assert.deepEqual(wrongSign.shaders, ["axpy"]);
  const shorter = await runSelfCheckCase(
    ctx,
    selfCheckCase({
      kernel: "axpy",
      inputs,
      build,
      reference: (v) => axpyRef(v.x, v.y, -1).subarray(1),
      tolerance: 1e-6,
    }),
  );
  assert.equal(shorter.ok, false);
});
