// Separate CFG caches (cache-strategies.md; cache-dit's enable_separate_cfg): where a pipeline runs the
// conditional and unconditional passes of a step as two forwards (Wan), each pass has its own strategy, so
// its residuals, diffs, counters and calibrators never see the other's and the unconditional pass never
// replays the conditional one's cache. The conditional pass is cache-dit's "non-CFG" step, the unconditional
// one its "CFG" step.
import type { StepRecorder } from "../gpu/step_recorder.ts";
import type { BlockList, CacheStats, CacheStrategy, ForwardInfo, ForwardReport } from "./strategy.ts";

export class SeparateCfgCache implements CacheStrategy {
  readonly name: string;

  constructor(private readonly cond: CacheStrategy, private readonly uncond: CacheStrategy) {
    this.name = cond.name;
  }

  /** A forward without a branch is a step without CFG: the conditional pass alone. */
  forward(info: ForwardInfo, list: BlockList, recorder: StepRecorder): Promise<ForwardReport | null> {
    return (info.branch === "uncond" ? this.uncond : this.cond).forward(info, list, recorder);
  }

  /** The conditional pass' reports from the GPU, each with the unconditional pass' of its step. */
  async settle(recorder: StepRecorder): Promise<ForwardReport[]> {
    // Both logs are copied behind the same step before either read is awaited.
    const [cond, uncond] = await Promise.all([this.cond.settle(recorder), this.uncond.settle(recorder)]);
    return cond.map((report, i) => (uncond[i] ? { ...report, cfg: uncond[i] } : report));
  }

  memoryBytes(): number {
    return this.cond.memoryBytes() + this.uncond.memoryBytes();
  }

  stats(): CacheStats {
    const c = this.cond.stats();
    const u = this.uncond.stats();
    if (u.steps === 0) return c;
    const { cachedSteps, computedSteps, diffs, gates, blocksExecuted, blocksTotal } = u;
    return {
      ...c,
      blocksExecuted: c.blocksExecuted + blocksExecuted,
      blocksTotal: c.blocksTotal + blocksTotal,
      memoryBytes: c.memoryBytes + u.memoryBytes,
      readbacks: c.readbacks + u.readbacks,
      cfg: { cachedSteps, computedSteps, diffs, gates, blocksExecuted, blocksTotal },
    };
  }

  release(): void {
    this.cond.release();
    this.uncond.release();
  }
}
