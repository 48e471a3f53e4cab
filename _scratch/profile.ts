import { acquireGpuOrExplain } from "../src/cli/acquire_gpu.ts";
import { Dit } from "../src/model/dit.ts";
import { generate } from "../src/pipeline/generate.ts";
import { createStrategy } from "../src/cache/create.ts";
import { resolveCacheOptions } from "../src/cache/options.ts";
const ctx = (await acquireGpuOrExplain())!;
const model = await Dit.load(ctx, "weights/mnist-dit");
const req = { labels: [3], steps: 28, seed: 1001, guidance: 3 };
const configs: Record<string, unknown>[] = [{ strategy: "none" }, {
  strategy: "dbcache",
  Fn: 1,
  Bn: 0,
  residual_diff_threshold: 1e-9,
  max_warmup_steps: 0,
}];
for (let r = 0; r < 4; r++) {
  for (const c of configs) {
    const s = createStrategy(ctx, resolveCacheOptions(c, { blocks: 12, steps: 28, channels: 128 }));
    const t0 = performance.now();
    const res = await generate(ctx, model, req, { strategy: s });
    const t1 = performance.now();
    s.release();
    console.log(c.strategy, (t1 - t0).toFixed(0), "ms", "readbacks", res.readbacks, "submits", res.submits);
  }
}
