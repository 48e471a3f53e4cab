// Request options -> the strategy object that runs one request's block list.
import type { GpuContext } from "../gpu/context.ts";
import { DbCache } from "./dbcache.ts";
import { DbPrune } from "./dbprune.ts";
import type { ResolvedCacheOptions } from "./options.ts";
import { type CacheStrategy, NoCache } from "./strategy.ts";

export function createStrategy(ctx: GpuContext, options: ResolvedCacheOptions): CacheStrategy {
  switch (options.strategy) {
    case "none":
      return new NoCache();
    case "dbcache":
    case "fbcache":
      return new DbCache(ctx, options);
    case "dbprune":
      return new DbPrune(ctx, options);
  }
}
