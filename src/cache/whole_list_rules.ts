// Resolved options -> the rule and stats label of a whole-list strategy (src/cache/whole_list_cache.ts).
import { EasyCacheRule } from "./easycache.ts";
import { MagCacheRule } from "./magcache.ts";
import { TeaCacheRule } from "./teacache.ts";
import type { ListRule } from "./whole_list_cache.ts";
import type { WholeListRuleOptions } from "./kernels/whole_list_decision.ts";
import type { ResolvedWholeList } from "./whole_list_options.ts";

/** The rule (its CPU reference) and, for the rules the GPU decision kernel knows, the kernel's options. */
export function wholeListRule(
  o: ResolvedWholeList,
): { rule: ListRule; label: string; gpuRule?: WholeListRuleOptions } {
  switch (o.strategy) {
    case "magcache":
      return {
        rule: new MagCacheRule(o),
        label: `magcache (threshold ${o.threshold}, max_skip_steps ${o.max_skip_steps})`,
      };
    case "teacache":
      return {
        rule: new TeaCacheRule(o),
        label: `teacache (rel_l1_thresh ${o.rel_l1_thresh})`,
        gpuRule: {
          rule: "teacache",
          thresh: o.rel_l1_thresh,
          ret_steps: o.ret_steps,
          coefficients: o.coefficients,
        },
      };
    case "easycache":
      return {
        rule: new EasyCacheRule(o),
        label: `easycache (thresh ${o.thresh})`,
        gpuRule: { rule: "easycache", thresh: o.thresh, ret_steps: o.ret_steps },
      };
  }
}
