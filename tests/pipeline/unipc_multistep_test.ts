// UniPCMultistepScheduler as Wan ships it, against diffusers (tools/unipc_fixtures.py): the timesteps and
// sigmas, then every step() replayed on the CPU (src/ref/sampler_step.ts) from the recorded model outputs,
// guided runs combining the halves in the update; FlowMatchEuler built from the same config; the state the
// GPU keeps for each scheduler; and the options that are refused.
import assert from "node:assert/strict";
import { parsePythonJson } from "../../src/model/component_config.ts";
import {
  createSchedule,
  type Schedule,
  SchedulerConfigError,
  scheduleState,
  wanFlowMatchSchedule,
} from "../../src/pipeline/schedulers/schedule.ts";
import { assertClose } from "../support/assert_close.ts";
import { type Fixture, fixtureTensor, readFixture } from "../support/fixtures.ts";
import { ScheduleReplay } from "../support/schedule_replay.ts";

const FIXTURES = "tests/fixtures/wan";
const RUNS = [
  ...[3, 5].flatMap((shift) => [4, 10, 50].map((steps) => `wan-shift${shift}-${steps}`)),
  "order1",
  "order3",
  "no-lower-order-final",
  "bh1-sigma-min",
  "sigma-min",
  "disable-corrector-0-2",
  "wan-shift5-guided",
  "wan-shift3-guided-fixed-offset",
];
// diffusers rounds every tensor op to float32, the replay each step's sample, x0 and corrected sample once.
// Samples stay below ~3 (8.5 guided) and agree to 3e-6 after 50 steps (at most 21% of this bound). Leaving out
// the corrector moves them by 0.05 to 1; a wrong order, rho or sigma index by 1e-3 or more.
const TOL = { atol: 1e-5, rtol: 1e-5 };

function fixtureConfig(fixture: Fixture): Record<string, unknown> {
  return {
    _class_name: fixture.metadata.class,
    ...parsePythonJson(fixture.metadata.config) as Record<string, unknown>,
  };
}

function fixtureSchedule(name: string, fixture: Fixture): Schedule {
  return createSchedule(`scheduler-unipc-${name}`, fixtureConfig(fixture), Number(fixture.metadata.steps));
}

/** Replays `schedule` from the fixture's initial sample and model outputs; checks every prev_sample. */
function replayRun(fixture: Fixture, schedule: Schedule): void {
  const initial = fixture.tensors.get("initial")!;
  const replay = new ScheduleReplay(initial.data, initial.shape[0]);
  const guidance = fixture.metadata.guidance_scale;
  schedule.steps.forEach((step, i) => {
    const sample = guidance === undefined
      ? replay.step(step, fixtureTensor(fixture, `model_output.${i}`))
      : replay.step(
        step,
        [...fixtureTensor(fixture, `cond.${i}`), ...fixtureTensor(fixture, `uncond.${i}`)],
        Number(guidance),
      );
    assertClose(sample, fixtureTensor(fixture, `prev_sample.${i}`), TOL, `prev_sample.${i}`);
  });
}

for (const name of RUNS) {
  Deno.test(`UniPC ${name}: diffusers' timesteps, sigmas and every prev_sample`, async () => {
    const fixture = await readFixture(`${FIXTURES}/scheduler-unipc-${name}.safetensors`);
    const schedule = fixtureSchedule(name, fixture);
    const steps = Number(fixture.metadata.steps);
    assert.equal(schedule.steps.length, steps);
    // Integer timesteps (truncated float64 sigma * 1000) and float32 sigmas: both exact.
    const exact = { atol: 0, rtol: 0 };
    assertClose(
      schedule.steps.map((s) => s.timestep),
      fixtureTensor(fixture, "timesteps"),
      exact,
      "timesteps",
    );
    const sigmas = fixtureTensor(fixture, "sigmas");
    assertClose(schedule.steps.map((s) => -s.x0.model), sigmas.subarray(0, steps), exact, "sigmas");
    assert.equal(schedule.initNoiseSigma, 1);
    replayRun(fixture, schedule);
  });
}

Deno.test("UniPC bh1 at a zero final sigma: diffusers' last step is NaN, so the schedule is refused", async () => {
  const fixture = await readFixture(`${FIXTURES}/scheduler-unipc-bh1-zero.safetensors`);
  const steps = Number(fixture.metadata.steps);
  assert.ok(fixtureTensor(fixture, `prev_sample.${steps - 2}`).every(Number.isFinite));
  assert.ok(fixtureTensor(fixture, `prev_sample.${steps - 1}`).every(Number.isNaN));
  assert.throws(
    () => fixtureSchedule("bh1-zero", fixture),
    /step 3 \(timestep 500\) of num_inference_steps 4 has non-finite coefficients: next\.x0 NaN/,
  );
});

Deno.test("FlowMatchEuler for Wan: FlowMatchEulerDiscreteScheduler(num_train_timesteps, shift=flow_shift)", async () => {
  const fixture = await readFixture(`${FIXTURES}/scheduler-flow-euler-wan-shift5.safetensors`);
  const config = parsePythonJson(fixture.metadata.config) as Record<string, unknown>;
  assert.equal(config.shift, 5);
  const wan = { ...WAN, flow_shift: 5 };
  const schedule = wanFlowMatchSchedule("scheduler_config.json", wan, Number(fixture.metadata.steps));
  // Fractional float32 timesteps (sigma * 1000) on both sides.
  assertClose(
    schedule.steps.map((s) => s.timestep),
    fixtureTensor(fixture, "timesteps"),
    { atol: 1e-4, rtol: 0 },
    "timesteps",
  );
  replayRun(fixture, schedule);
  assert.throws(
    () => wanFlowMatchSchedule("scheduler_config.json", { ...WAN, flow_shift: -1 }, 10),
    /^Error: scheduler_config\.json: flow_shift -1 is invalid/,
  );
});

const PATH = "transformer/../scheduler/scheduler_config.json";
/** Wan2.1-T2V's scheduler_config.json. */
const WAN = {
  _class_name: "UniPCMultistepScheduler",
  beta_end: 0.02,
  beta_schedule: "linear",
  beta_start: 0.0001,
  disable_corrector: [],
  dynamic_thresholding_ratio: 0.995,
  final_sigmas_type: "zero",
  flow_shift: 3.0,
  lower_order_final: true,
  num_train_timesteps: 1000,
  predict_x0: true,
  prediction_type: "flow_prediction",
  rescale_betas_zero_snr: false,
  sample_max_value: 1.0,
  solver_order: 2,
  solver_p: null,
  solver_type: "bh2",
  steps_offset: 0,
  thresholding: false,
  timestep_spacing: "linspace",
  trained_betas: null,
  use_beta_sigmas: false,
  use_exponential_sigmas: false,
  use_flow_sigmas: true,
  use_karras_sigmas: false,
};

Deno.test("scheduleState: the x0 history and last sample each scheduler keeps on the GPU", () => {
  const state = (config: object, steps = 10) => scheduleState(createSchedule(PATH, config, steps));
  assert.deepEqual(state(WAN), { historySlots: 2, lastSample: true });
  assert.deepEqual(state({ ...WAN, solver_order: 3 }), { historySlots: 3, lastSample: true });
  assert.deepEqual(state({ ...WAN, solver_order: 1 }), { historySlots: 1, lastSample: true });
  // One step: no corrector, a first-order predictor.
  assert.deepEqual(state(WAN, 1), { historySlots: 0, lastSample: false });
  assert.deepEqual(state({ _class_name: "DPMSolverMultistepScheduler" }), {
    historySlots: 1,
    lastSample: false,
  });
  assert.deepEqual(state({ _class_name: "EulerDiscreteScheduler" }), { historySlots: 0, lastSample: false });
});

Deno.test("UniPC: the DPM-Solver solver_type names are bh2, as diffusers maps them", () => {
  const bh2 = createSchedule(PATH, WAN, 10);
  for (const solver_type of ["midpoint", "heun", "logrho"]) {
    assert.deepEqual(createSchedule(PATH, { ...WAN, solver_type }, 10), bh2);
  }
  assert.notDeepEqual(
    createSchedule(PATH, { ...WAN, solver_type: "bh1", final_sigmas_type: "sigma_min" }, 10),
    {
      ...bh2,
    },
  );
});

function refuses(config: unknown, message: RegExp, options = {}, steps = 10) {
  assert.throws(() => createSchedule(PATH, config, steps, options), (e: unknown) => {
    assert.ok(e instanceof SchedulerConfigError, `${e}`);
    assert.match(e.message, message);
    assert.ok(e.message.startsWith(`${PATH}: `), e.message);
    return true;
  });
}

Deno.test("UniPC: options it does not implement are refused by name", () => {
  refuses(
    { ...WAN, prediction_type: "epsilon" },
    /prediction_type "epsilon" is not supported; supported: "flow_prediction"/,
  );
  refuses({ ...WAN, prediction_type: undefined }, /prediction_type undefined is not supported/);
  refuses({ ...WAN, use_flow_sigmas: false }, /use_flow_sigmas false is not supported; supported: true/);
  for (const option of ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "thresholding"]) {
    refuses({ ...WAN, [option]: true }, new RegExp(`${option} true is not supported; supported: false`));
  }
  refuses({ ...WAN, use_dynamic_shifting: true }, /use_dynamic_shifting true is not supported/);
  refuses({ ...WAN, predict_x0: false }, /predict_x0 false is not supported; supported: true/);
  refuses({ ...WAN, solver_order: 4 }, /solver_order 4 is not supported; supported: 1, 2, 3/);
  refuses({ ...WAN, solver_type: "bh3" }, /solver_type "bh3" is not supported; supported: "bh1", "bh2"/);
  refuses({ ...WAN, solver_p: {} }, /solver_p \{\} is not supported; supported: null/);
  refuses({ ...WAN, shift_terminal: 0.1 }, /shift_terminal 0\.1 is not supported; supported: null/);
  refuses({ ...WAN, final_sigmas_type: "one" }, /final_sigmas_type "one" is not supported/);
  refuses({ ...WAN, timestep_spacing: "log" }, /timestep_spacing "log" is not supported/);
  refuses({ ...WAN, disable_corrector: [0.5] }, /disable_corrector\.0 0\.5 is invalid/);
  refuses({ ...WAN, flow_shift: 0 }, /flow_shift 0 is invalid/);
  refuses(WAN, /custom sigmas are not supported by UniPCMultistepScheduler/, { sigmas: [1, 0.5] });
  refuses(WAN, /eta 1 is not supported by UniPCMultistepScheduler; supported: 0/, { eta: 1 });
  refuses(WAN, /num_inference_steps 1001 is not supported; supported: 1\.\.1000/, {}, 1001);
  // Second order on the last step divides by the infinite h of a zero final sigma (inf in diffusers too).
  refuses(
    { ...WAN, lower_order_final: false },
    /step 9 \(timestep 251\) of num_inference_steps 10 has non-finite coefficients: next\.x0 Infinity/,
  );
});
