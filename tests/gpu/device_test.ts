import assert from "node:assert/strict";
import { Gpu } from "../../src/gpu/device.ts";
import { bindKernel, KernelError } from "../../src/gpu/kernel.ts";
import { readbackCount } from "../../src/gpu/readback.ts";
import { residualDiff } from "../../src/ops/residual_diff.ts";
import { gpuTest, runAndRead } from "../support/gpu.ts";

gpuTest("device reports the adapter and the limits it was granted", (ctx) => {
  const { info } = ctx.gpu;
  assert.ok(info.adapter.length > 0);
  assert.ok(info.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024, "at least the spec default");
  assert.ok(ctx.gpu.healthy);
});

gpuTest("the pool reuses released buffers: a steady-state loop allocates nothing", async (ctx) => {
  const x = ctx.pool.upload(new Float32Array(64).fill(1), [64]);
  const step = async () => {
    const y = ctx.pool.tensor([64]);
    const op = residualDiff(ctx, x, y);
    await runAndRead(ctx, op.dispatches, op.result);
    op.release();
    y.release();
  };
  await step();
  const before = ctx.pool.stats().allocations;
  for (let i = 0; i < 3; i++) await step();
  assert.equal(ctx.pool.stats().allocations, before);
  x.release();
});

gpuTest("every readback is counted", async (ctx) => {
  const x = ctx.pool.upload(new Float32Array([1, 2, 3, 4]), [4]);
  const op = residualDiff(ctx, x, x);
  const before = readbackCount();
  await runAndRead(ctx, op.dispatches, op.result);
  assert.equal(readbackCount(), before + 1);
  op.release();
  x.release();
});

gpuTest("sizes over the device limits are refused before anything is dispatched", (ctx) => {
  const limit = ctx.gpu.info.limits.maxStorageBufferBindingSize;
  assert.throws(
    () => ctx.pool.tensor([limit / 4 + 1]),
    new RegExp(`needs ${limit + 4} bytes, over the device's maxStorageBufferBindingSize ${limit}`),
  );
  assert.throws(() => ctx.pool.tensor([3, 0]), /every dimension must be a positive integer/);
  const x = ctx.pool.tensor([4]);
  const kernel = ctx.kernels.get({
    name: "residual_diff",
    entry: "finish",
    bindings: ["read", "read", "read_write", "read_write", "read_write", "uniform"],
    constants: { WG: 256 },
  });
  const tooMany = ctx.gpu.info.limits.maxComputeWorkgroupsPerDimension + 1;
  assert.throws(
    () => bindKernel(ctx.gpu, kernel, [x, x, x, x, x], [tooMany, 1, 1], new ArrayBuffer(32)),
    (e) =>
      e instanceof KernelError && e.message.includes("residual_diff") && e.message.includes(`${tooMany}`),
  );
  assert.throws(
    () => bindKernel(ctx.gpu, kernel, [x], [1, 1, 1], new ArrayBuffer(32)),
    /expects 5 buffers, got 1/,
  );
  x.release();
});

Deno.test("no adapter: a one-line message naming the fix and a non-zero exit, no stack trace", async () => {
  // Metal does not exist on Linux, so this backend list leaves WebGPU with no adapter at all.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-read", "--allow-env", "src/main.ts", "--self-check"],
    env: { DENO_WEBGPU_BACKEND: "metal" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 1);
  assert.match(stderr, /^no WebGPU adapter: install Mesa .*or a GPU driver$/);
  assert.doesNotMatch(stderr, /\bat \w|Stack/);
});

gpuTest("pipelines are compiled once per (kernel, constants)", (ctx) => {
  const spec = (WG: number) => ({
    name: "residual_diff",
    entry: "finish",
    bindings: ["read", "read", "read_write", "read_write", "uniform"] as const,
    constants: { WG },
  });
  const first = ctx.kernels.get(spec(256));
  const size = ctx.kernels.size;
  assert.equal(ctx.kernels.get(spec(256)), first);
  assert.equal(ctx.kernels.size, size);
  assert.notEqual(ctx.kernels.get(spec(128)), first);
  assert.equal(ctx.kernels.size, size + 1);
});

Deno.test({
  name: "a lost device marks the GPU unhealthy and a new one can be acquired",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await Gpu.acquire();
    assert.ok(gpu.healthy);
    gpu.destroy();
    await gpu.device.lost;
    await Promise.resolve(); // the lost handler runs in the promise's own continuation
    assert.equal(gpu.healthy, false);
    assert.match(gpu.lostReason ?? "", /^destroyed/);
    const again = await Gpu.acquire();
    assert.ok(again.healthy);
    again.destroy();
  },
});
