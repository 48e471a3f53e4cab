// tfjs-backend-webgpu's matMul as the matmul bench's outside baseline. tfjs requests its own device from
// navigator.gpu (the same adapter where only one exists) and runs under Deno without a shim. Loaded on demand
// so that other suites never pay for the import. Timed like timeCommands: warmup batches first (tfjs
// compiles a program per shape on first use), then batches of `repeat` tf.matMul(x, W, false, true) issued
// back to back and ended by one `await data()` of the last result; median ms per matMul. Included: tfjs's
// JS-side op dispatch, the GPU work and one readback per batch (amortised over `repeat`); excluded: the
// upload of x and W.
import type { TimingOptions } from "./harness.ts";

const TARGET_BATCH_MS = 200;

export interface TfjsMatMul {
  note: string;
  /** x [m, k], w [n, k]; `out` is the [m, n] result of the last run. */
  time(
    x: Float32Array,
    w: Float32Array,
    m: number,
    n: number,
    k: number,
    options: TimingOptions,
  ): Promise<{ ms: number; out: Float32Array }>;
}

/** The runner, or a line saying why tfjs-backend-webgpu cannot run here. */
export async function loadTfjsMatMul(): Promise<TfjsMatMul | string> {
  let tf: typeof import("@tensorflow/tfjs-core");
  try {
    tf = await import("@tensorflow/tfjs-core");
    await import("@tensorflow/tfjs-backend-webgpu");
    if (!(await tf.setBackend("webgpu"))) {
      return "tfjs-backend-webgpu unavailable: setBackend('webgpu') failed";
    }
    await tf.ready();
  } catch (e) {
    return `tfjs-backend-webgpu unavailable: ${e instanceof Error ? e.message : e}`;
  }
  return {
    note: `tfjs ${tf.version_core} webgpu, its own device; matMul + await data() per batch`,
    async time(x, w, m, n, k, options) {
      const a = tf.tensor2d(x, [m, k]);
      const b = tf.tensor2d(w, [n, k]);
      let out: Float32Array = new Float32Array(0);
      const batch = async (repeat: number) => {
        const start = performance.now();
        const results = Array.from({ length: repeat }, () => tf.matMul(a, b, false, true));
        out = await results[repeat - 1].data() as Float32Array;
        const ms = (performance.now() - start) / repeat;
        for (const r of results) r.dispose();
        return ms;
      };
      // Never time tfjs's first use: it compiles the program for this shape.
      const { warmup = 1, budgetMs = 1500, minRuns = 3 } = options;
      let single = Infinity;
      for (let i = 0; i < Math.max(1, warmup); i++) single = Math.min(single, await batch(1));
      const repeat = Math.max(1, Math.min(256, Math.ceil(TARGET_BATCH_MS / single)));
      const times: number[] = [];
      const began = performance.now();
      while (times.length < minRuns || performance.now() - began < budgetMs) times.push(await batch(repeat));
      a.dispose();
      b.dispose();
      times.sort((p, q) => p - q);
      return { ms: times[Math.floor(times.length / 2)], out };
    },
  };
}
