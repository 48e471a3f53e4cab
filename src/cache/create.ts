// Request options -> the strategy object that runs one request's block list: one per CFG pass where the
// pipeline runs the passes as separate forwards (src/cache/separate_cfg.ts).
import type { GpuContext } from "../gpu/context.ts";
import { DbCache } from "./dbcache.ts";
import { DbPrune } from "./dbprune.ts";
import type { DecisionPath } from "./decision_path.ts";
import type { ResolvedCacheOptions } from "./options.ts";
import { SeparateCfgCache } from "./separate_cfg.ts";
import { type CacheStrategy, NoCache } from "./strategy.ts";
import { WholeListCache } from "./whole_list_cache.ts";
import type { ResolvedWholeList } from "./whole_list_options.ts";
import { wholeListRule } from "./whole_list_rules.ts";

/**
 * `path`: the decision path of the strategies that decide per step on measured values (DBCache, DBPrune,
 * TeaCache, EasyCache);
 * absent, each takes the adapter's choice for its block list (src/cache/decision_path.ts).
 */
export function createStrategy(
  ctx: GpuContext,
  options: ResolvedCacheOptions,
  path?: DecisionPath,
): CacheStrategy {
  switch (options.strategy) {
    case "none":
      return new NoCache();
    case "dbcache":
    case "fbcache": {
      if (!options.cfg.separate) return new DbCache(ctx, options, { path });
      const cond = new DbCache(ctx, options, { path });
      // Run first, the unconditional pass finds no diff of its step to share, and measures its own.
      const shared = !options.cfg.diffSeparate && !options.cfg.computeFirst;
      return new SeparateCfgCache(
        cond,
        new DbCache(ctx, options, shared ? { path, sharedDiff: cond } : { path }),
      );
    }
    case "dbprune":
      if (!options.cfg.separate) return new DbPrune(ctx, options, path);
      return new SeparateCfgCache(new DbPrune(ctx, options, path), new DbPrune(ctx, options, path));
    case "magcache":
    case "teacache":
    case "easycache": {
      if (!options.cfg.separate) return wholeList(ctx, options, path);
      return new SeparateCfgCache(wholeList(ctx, options, path), wholeList(ctx, options, path));
    }
  }
}

function wholeList(ctx: GpuContext, options: ResolvedWholeList, path?: DecisionPath): WholeListCache {
  const { label, gpuRule } = wholeListRule(options);
  const rule = () => wholeListRule(options).rule;
  return new WholeListCache(ctx, options.strategy, rule, label, options.notes, { gpuRule, path });
}
