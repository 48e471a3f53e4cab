// The schedulers' coefficients against diffusers (tools/diffusers_fixtures.py, scheduler_run): each fixture's
// run is replayed on the CPU (src/ref/sampler_step.ts) from the recorded model outputs, checking the model input and the
// sample after every step; then the refusals of configs and options the coefficients cannot reproduce.
import { parsePythonJson } from "../../src/model/component_config.ts";
import assert from "node:assert/strict";
import {
  createSchedule,
  SCHEDULER_CLASSES,
  SchedulerConfigError,
} from "../../src/pipeline/schedulers/schedule.ts";
import { assertClose } from "../support/assert_close.ts";
import { type Fixture, fixtureTensor, readFixture } from "../support/fixtures.ts";
import { ScheduleReplay } from "../support/schedule_replay.ts";

const FIXTURES = "tests/fixtures/diffusers";
const NAMES = [
  "ddim-epsilon",
  "ddim-v-clip",
  "ddim-sample-linspace",
  "dpm-2m-epsilon",
  "dpm-2m-v-karras",
  "dpm-1-noeuler",
  "euler-epsilon",
  "euler-v-leading",
  "flow-euler-shift3",
  "flow-euler-dynamic",
];
// diffusers rounds every tensor op to float32; the replay applies the coefficients in float64 and rounds each
// step's sample and x0 to float32 once. One step agrees to ~2e-7 of the samples' magnitude, but
// epsilon-prediction steps scale earlier differences up (DDIM weighs the sample by sqrt(alpha_prev / alpha)
// > 1), so after 10-12 steps samples of magnitude ~15 are off by up to ~3e-5 (ddim-epsilon, dpm-1-noeuler and
// dpm-2m-epsilon use 40-70% of this bound, the others < 15%). A wrong formula for any coefficient moves
// samples by far more.
const TOL = { atol: 1e-5, rtol: 1e-5 };

function scheduleOf(fixture: Fixture, name: string) {
  const { metadata } = fixture;
  const config = {
    _class_name: metadata.class,
    ...parsePythonJson(metadata.config) as Record<string, unknown>,
  };
  const options = metadata.mu === undefined ? {} : { mu: Number(metadata.mu) };
  return createSchedule(`scheduler-${name}`, config, Number(metadata.steps), options);
}

for (const name of NAMES) {
  Deno.test(`schedulers: ${name} replays diffusers' timesteps, model inputs and samples`, async () => {
    const fixture = await readFixture(`${FIXTURES}/scheduler-${name}.safetensors`);
    const schedule = scheduleOf(fixture, name);
    const timesteps = fixtureTensor(fixture, "timesteps");
    // Integer timesteps must match exactly; fractional ones are float32 on both sides.
    const timestepTol = timesteps.every(Number.isInteger) ? 0 : 1e-4;
    assertClose(
      schedule.steps.map((s) => s.timestep),
      timesteps,
      { atol: timestepTol, rtol: 0 },
      "timesteps",
    );
    const initial = fixtureTensor(fixture, "initial");
    const scaledInitial = fixtureTensor(fixture, "scaled_initial");
    assertClose(initial.map((v) => v * schedule.initNoiseSigma), scaledInitial, TOL, "init_noise_sigma");

    const replay = new ScheduleReplay(scaledInitial, 2);
    schedule.steps.forEach((step, i) => {
      const modelInput = replay.sample.map((s) => step.inputScale * s);
      assertClose(modelInput, fixtureTensor(fixture, `model_input.${i}`), TOL, `model_input.${i}`);
      const sample = replay.step(step, fixtureTensor(fixture, `model_output.${i}`));
      assertClose(sample, fixtureTensor(fixture, `sample.${i}`), TOL, `sample.${i}`);
    });
  });
}

const PATH = "model/scheduler/scheduler_config.json";
const DDIM = { _class_name: "DDIMScheduler" };
const DPM = { _class_name: "DPMSolverMultistepScheduler" };
const EULER = { _class_name: "EulerDiscreteScheduler" };
const FLOW = { _class_name: "FlowMatchEulerDiscreteScheduler" };

function refuses(config: unknown, steps: number, message: RegExp, options = {}) {
  assert.throws(() => createSchedule(PATH, config, steps, options), (e: unknown) => {
    assert.ok(e instanceof SchedulerConfigError, `${e}`);
    assert.match(e.message, message);
    assert.ok(e.message.startsWith(`${PATH}: `), e.message);
    return true;
  });
}

Deno.test("schedulers: an unknown or missing _class_name lists the supported classes", () => {
  assert.deepEqual(SCHEDULER_CLASSES, [
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "EulerDiscreteScheduler",
    "FlowMatchEulerDiscreteScheduler",
    "UniPCMultistepScheduler",
  ]);
  const supported = `supported: ${SCHEDULER_CLASSES.join(", ")}$`;
  refuses(
    { _class_name: "PNDMScheduler" },
    10,
    new RegExp(`_class_name "PNDMScheduler" is not supported; ${supported}`),
  );
  refuses({}, 10, new RegExp(`_class_name undefined is not supported; ${supported}`));
  refuses({ _class_name: "toString" }, 10, /_class_name "toString" is not supported/);
});

Deno.test("schedulers: unsupported options are named with their value and the supported ones", () => {
  refuses({ ...DDIM, thresholding: true }, 10, /thresholding true is not supported; supported: false/);
  refuses(
    { ...DDIM, prediction_type: "flow" },
    10,
    /prediction_type "flow" is not supported; supported: "epsilon"/,
  );
  refuses({ ...DDIM, beta_schedule: "sigmoid" }, 10, /beta_schedule "sigmoid" is not supported/);
  refuses({ ...DDIM, trained_betas: [0.1, 0.2] }, 10, /trained_betas \[2 values\] is invalid: must list/);
  refuses(
    { ...DPM, algorithm_type: "sde-dpmsolver++" },
    10,
    /algorithm_type "sde-dpmsolver\+\+" is not supported; supported: "dpmsolver\+\+"/,
  );
  refuses({ ...DPM, solver_order: 3 }, 10, /solver_order 3 is not supported; supported: 1, 2/);
  refuses({ ...DPM, use_lu_lambdas: true }, 10, /use_lu_lambdas true is not supported; supported: false/);
  refuses({ ...DPM, variance_type: "learned_range" }, 10, /variance_type "learned_range" is not supported/);
  refuses({ ...DPM, final_sigmas_type: "one" }, 10, /final_sigmas_type "one" is not supported/);
  refuses(
    { ...EULER, interpolation_type: "log_linear" },
    10,
    /interpolation_type "log_linear" is not supported/,
  );
  refuses({ ...EULER, use_beta_sigmas: true }, 10, /use_beta_sigmas true is not supported; supported: false/);
  refuses({ ...FLOW, invert_sigmas: true }, 10, /invert_sigmas true is not supported; supported: false/);
  refuses({ ...FLOW, stochastic_sampling: true }, 10, /stochastic_sampling true is not supported/);
  refuses({ ...FLOW, use_karras_sigmas: true }, 10, /use_karras_sigmas true is not supported/);
  refuses({ ...FLOW, use_dynamic_shifting: true }, 10, /use_dynamic_shifting needs the pipeline's mu/);
  refuses({ ...EULER, steps_offset: "1" }, 10, /steps_offset "1" is invalid: /);
});

Deno.test("schedulers: num_inference_steps outside 1..num_train_timesteps is refused", () => {
  for (const steps of [0, 1001, 2.5]) {
    refuses(DDIM, steps, new RegExp(`num_inference_steps ${steps} is not supported; supported: 1\\.\\.1000`));
  }
  refuses(
    { ...EULER, num_train_timesteps: 20 },
    21,
    /num_inference_steps 21 is not supported; supported: 1\.\.20/,
  );
  assert.equal(createSchedule(PATH, DDIM, 1000).steps.length, 1000);
  // Leading spacing with an offset would index alphas_cumprod past its end (an IndexError in diffusers).
  refuses({ ...DDIM, steps_offset: 1 }, 1000, /step 0 \(timestep 1000\) .* has non-finite coefficients/);
});

Deno.test("schedulers: DDIM's eta splits the noise direction into fresh noise; other schedulers refuse it", () => {
  const { steps } = createSchedule(PATH, { ...DDIM, clip_sample: false }, 10, { eta: 1 });
  for (const { next } of steps.slice(0, -1)) {
    assert.ok(next.noise > 0);
    // sqrt(alpha_prev)^2 + direction^2 + std^2 = alpha_prev + (1 - alpha_prev - std^2) + std^2
    assertClose([next.x0 ** 2 + next.model ** 2 + next.noise ** 2], [1], { atol: 1e-6, rtol: 0 }, "variance");
  }
  refuses(DDIM, 10, /eta 1\.5 is not supported; supported: 0\.\.1/, { eta: 1.5 });
  refuses(EULER, 10, /eta 0\.5 is not supported by EulerDiscreteScheduler; supported: 0/, { eta: 0.5 });
});
