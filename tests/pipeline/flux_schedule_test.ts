// FluxPipeline's schedule against diffusers' own (tools/flux_fixtures.py, schedules): retrieve_timesteps with
// sigmas linspace(1, 1/N, N) and calculate_shift's mu, for FLUX.1 dev's and schnell's published scheduler
// configs at full sizes, so that the shift a real checkpoint gets is checked and not only the tiny fixtures'.
import { parsePythonJson } from "../../src/model/component_config.ts";
import { calculateShift, fluxSchedule } from "../../src/pipeline/pipelines/flux.ts";
import { assertClose } from "../support/assert_close.ts";
import { readFixture } from "../support/fixtures.ts";

// diffusers computes the shifted sigmas in float64 and stores them as float32; both sides round once.
const TOL = { atol: 1e-6, rtol: 1e-6 };

for (const name of ["dev-1024", "dev-768x512", "schnell-1024"]) {
  Deno.test(`FluxPipeline's schedule matches diffusers (${name})`, async () => {
    const fixture = await readFixture(`tests/fixtures/flux/schedule-${name}.safetensors`);
    const config = {
      _class_name: "FlowMatchEulerDiscreteScheduler",
      ...parsePythonJson(fixture.metadata.config) as Record<string, unknown>,
    };
    const [steps, tokens] = [Number(fixture.metadata.steps), Number(fixture.metadata.image_tokens)];
    assertClose([calculateShift(tokens, config)], [Number(fixture.metadata.mu)], TOL, "mu");
    const schedule = fluxSchedule(`schedule-${name}`, config, steps, tokens).steps;
    const sigmas = fixture.tensors.get("sigmas")!.data;
    assertClose(schedule.map((s) => s.timestep * 1000), fixture.tensors.get("timesteps")!.data, {
      atol: 1e-4,
      rtol: 1e-6,
    }, "timesteps");
    assertClose(schedule.map((s) => -s.x0.model), sigmas.subarray(0, steps), TOL, "sigmas");
    assertClose(
      schedule.map((s) => s.next.model),
      sigmas.subarray(1).map((next, i) => next - sigmas[i]),
      TOL,
      "sigma_next - sigma",
    );
  });
}
