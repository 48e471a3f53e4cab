// bench:wan's cache table: the one-stream configurations of src/cli/bench/cache_configs.ts (Wan's blocks are
// one list over one stream, as cache-dit's Wan adapter caches them) on one video from fixed latents and prompt
// embeddings, each against the uncached run of the same inputs: seconds, speedup, the steps each CFG branch
// cached, and the video's PSNR against the uncached one (frames in [-1, 1]). One run per configuration, in
// order, after a 2-step warm-up run.
import { markdownTable } from "markdown-table";
import { createStrategy } from "../../cache/create.ts";
import type { GpuContext } from "../../gpu/context.ts";
import { psnr } from "../../metrics/image_quality.ts";
import type { Float32Tensor } from "../../model/safetensors.ts";
import type { WanCard } from "../../pipeline/model_card.ts";
import type { WanPipeline } from "../../pipeline/pipelines/wan.ts";
import { type RequestInput, resolveRequest } from "../../pipeline/request.ts";
import { oneStreamConfigs } from "./cache_configs.ts";

export interface WanCacheRow {
  name: string;
  seconds: number;
  speedup: number;
  cachedSteps: number[];
  cfgCachedSteps: number[];
  psnr: number;
}

export interface WanCacheRun {
  request: Omit<RequestInput, "cache">;
  latents: Float32Array;
  embeddings: Record<string, Float32Tensor>;
  /** Row names of oneStreamConfigs to run besides the baseline; all when empty. */
  only: string[];
}

export async function wanCacheTable(
  ctx: GpuContext,
  card: WanCard,
  pipeline: WanPipeline,
  run: WanCacheRun,
): Promise<WanCacheRow[]> {
  const steps = run.request.steps!;
  const configs = oneStreamConfigs(steps).filter((c) =>
    c.cache.strategy === "none" || run.only.length === 0 || run.only.includes(c.name)
  );
  // Untimed: the first run compiles every kernel of the model, which the baseline must not pay.
  const warmUp = resolveRequest(card, { ...run.request, steps: 2, cache: "none" });
  await pipeline.run(warmUp, { latents: run.latents, embeddings: run.embeddings });
  const rows: WanCacheRow[] = [];
  let baseline: { images: Float32Array; seconds: number } | null = null;
  for (const config of configs) {
    const request = resolveRequest(card, { ...run.request, cache: config.cache });
    const strategy = createStrategy(ctx, request.cache);
    try {
      console.error(`bench:wan: ${config.name}, ${steps} steps`);
      const result = await pipeline.run(request, {
        strategy,
        latents: run.latents,
        embeddings: run.embeddings,
      });
      baseline ??= result;
      rows.push({
        name: config.name,
        seconds: result.seconds,
        speedup: baseline.seconds / result.seconds,
        cachedSteps: result.cache.cachedSteps,
        cfgCachedSteps: result.cache.cfg?.cachedSteps ?? [],
        psnr: psnr(result.images, baseline.images, 2),
      });
    } finally {
      strategy.release();
    }
  }
  return rows;
}

export function wanCacheMarkdown(rows: readonly WanCacheRow[], steps: number): string {
  return markdownTable([
    ["configuration", "seconds", "speedup", `cached steps / ${steps} (cond)`, "(uncond)", "PSNR dB"],
    ...rows.map((r) => [
      r.name,
      r.seconds.toFixed(1),
      `${r.speedup.toFixed(2)}x`,
      `${r.cachedSteps.length} [${r.cachedSteps.join(", ")}]`,
      `${r.cfgCachedSteps.length} [${r.cfgCachedSteps.join(", ")}]`,
      Number.isFinite(r.psnr) ? r.psnr.toFixed(1) : "inf",
    ]),
  ], { align: ["l", "r", "r", "r", "r", "r"] });
}
