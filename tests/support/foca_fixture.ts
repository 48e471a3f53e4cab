// The scripted FoCa run of tools/foca_fixtures.py (cache-dit's FoCaState): per step, what update() was given
// or what approximate() returned.
import { fixtureTensor, readFixture } from "./fixtures.ts";

export const FOCA_FIXTURE = "tests/fixtures/cache/foca.safetensors";

export type FocaStep = { step: number; computed: true; y: Float32Array } | {
  step: number;
  computed: false;
  /** cache-dit's forecast, rounded to f32 once. */
  expected: Float32Array;
};

export async function readFocaFixture(): Promise<{ shape: number[]; steps: FocaStep[] }> {
  const fixture = await readFixture(FOCA_FIXTURE);
  const shape = JSON.parse(fixture.metadata.shape) as number[];
  const steps = [...fixture.metadata.schedule].map((kind, step): FocaStep =>
    kind === "C"
      ? { step, computed: true, y: fixtureTensor(fixture, `update.${step}`) }
      : { step, computed: false, expected: fixtureTensor(fixture, `approximate.${step}`) }
  );
  return { shape, steps };
}
