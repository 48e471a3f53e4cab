// Request options -> the strategy object that runs one request's block list: one per CFG pass where the
// pipeline runs the passes as separate forwards (src/cache/separate_cfg.ts).
import type { GpuContext } from "../gpu/context.ts";
import { DbCache } from "./dbcache.ts";
import { DbPrune } from "./dbprune.ts";
import type { ResolvedCacheOptions } from "./options.ts";
import { SeparateCfgCache } from "./separate_cfg.ts";
import { type CacheStrategy, NoCache } from "./strategy.ts";
import { WholeListCache } from "./whole_list_cache.ts";
import type { ResolvedWholeList } from "./whole_list_options.ts";
import { wholeListRule } from "./whole_list_rules.ts";

export function createStrategy(ctx: GpuContext, options: ResolvedCacheOptions): CacheStrategy {
  switch (options.strategy) {
    case "none":
      return new NoCache();
    case "dbcache":
    case "fbcache": {
      if (!options.cfg.separate) return new DbCache(ctx, options);
      const cond = new DbCache(ctx, options);
      // Run first, the unconditional pass finds no diff of its step to share, and measures its own.
      const shared = !options.cfg.diffSeparate && !options.cfg.computeFirst;
      return new SeparateCfgCache(cond, new DbCache(ctx, options, shared ? cond : null));
    }
    case "dbprune":
      if (!options.cfg.separate) return new DbPrune(ctx, options);
      return new SeparateCfgCache(new DbPrune(ctx, options), new DbPrune(ctx, options));
    case "magcache":
    case "teacache":
    case "easycache": {
      if (!options.cfg.separate) return wholeList(ctx, options);
      return new SeparateCfgCache(wholeList(ctx, options), wholeList(ctx, options));
    }
  }
}

function wholeList(ctx: GpuContext, options: ResolvedWholeList): WholeListCache {
  const { rule, label } = wholeListRule(options);
  return new WholeListCache(ctx, options.strategy, rule, label, options.notes);
}
