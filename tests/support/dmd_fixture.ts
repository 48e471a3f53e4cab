// The scripted DMD runs of tools/dmd_fixtures.py (cache-dit's DMDState, and its TaylorSeerState on the
// fallback steps): per setting and step, what update() was given or what approximate() returned, in f64.
import type { DmdSettings } from "../../src/ref/dmd.ts";

export const DMD_FIXTURE = "tests/fixtures/cache/dmd.json";

export type DmdStep = { step: number; computed: true; y: Float32Array } | {
  step: number;
  computed: false;
  path: "dmd" | "taylor";
  /** The uniform tail's length and the horizon in spacings (null below 2 snapshots). */
  tail: number;
  k: number | null;
  /** What the engine must return: DMDState's forecast, or on fallback steps TaylorSeerState's. */
  expected: Float64Array;
  /** DMDState's own fallback, where the engine deliberately differs (src/ref/dmd.ts). */
  cacheDitFallback?: Float64Array;
};

export interface DmdRun {
  settings: DmdSettings;
  steps: DmdStep[];
}

interface FixtureStep {
  step: number;
  path: "dmd" | "taylor";
  tail: number;
  k: number | null;
  expected: number[];
  taylorseer?: number[];
}

interface FixtureJson {
  shape: number[];
  schedule: string;
  inputs: Record<string, number[]>;
  runs: { settings: Record<string, number>; steps: FixtureStep[] }[];
}

export async function readDmdFixture(): Promise<{ shape: number[]; runs: DmdRun[] }> {
  const fixture = JSON.parse(await Deno.readTextFile(DMD_FIXTURE)) as FixtureJson;
  const runs = fixture.runs.map(({ settings, steps }) => {
    const cached = new Map(steps.map((s) => [s.step, s]));
    return {
      settings: {
        history: settings.history,
        rank: settings.rank,
        ridge: settings.ridge,
        nDerivatives: settings.n_derivatives,
      },
      steps: [...fixture.schedule].map((kind, step): DmdStep => {
        if (kind === "C") return { step, computed: true, y: Float32Array.from(fixture.inputs[step]) };
        const s = cached.get(step)!;
        const dmd = { step, computed: false as const, path: s.path, tail: s.tail, k: s.k };
        return s.taylorseer
          ? {
            ...dmd,
            expected: Float64Array.from(s.taylorseer),
            cacheDitFallback: Float64Array.from(s.expected),
          }
          : { ...dmd, expected: Float64Array.from(s.expected) };
      }),
    };
  });
  return { shape: fixture.shape, runs };
}
