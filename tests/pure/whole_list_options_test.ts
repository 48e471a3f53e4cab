// Options of MagCache, TeaCache and EasyCache: ranges named with the option, the calibration a request
// without its own figures needs (and the command that makes one), a calibration made for another model.
import assert from "node:assert/strict";
import type { CalibrationFile, ModelCalibration } from "../../src/cache/calibration.ts";
import { nearestInterp } from "../../src/cache/magcache.ts";
import { CacheOptionsError, resolveCacheOptions } from "../../src/cache/options.ts";
import { polynomial } from "../../src/cache/teacache.ts";

const ENTRY = { runs: 2, created: "2026-12-01T00:00:00Z" };
const FILE: CalibrationFile = {
  model: "mnist-dit",
  calibrations: [
    { strategy: "magcache", sampler: "default", steps: 4, mag_ratios: [1, 1.1, 0.9, 1.2], ...ENTRY },
    { strategy: "teacache", sampler: "default", steps: 4, coefficients: [2, 0], ...ENTRY },
  ],
};
const calibration = (file: CalibrationFile | null, model = "mnist-dit"): ModelCalibration => ({
  model,
  dir: `weights/${model}`,
  file,
});
const context = (steps = 4, file: CalibrationFile | null = FILE, model?: string) => ({
  blocks: 12,
  steps,
  channels: 8,
  sampler: "default",
  calibration: calibration(file, model),
});

function rejects(input: unknown, pattern: RegExp, ctx = context()): void {
  assert.throws(() => resolveCacheOptions(input, ctx), (e: unknown) => {
    assert.ok(e instanceof CacheOptionsError, `expected CacheOptionsError, got ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("whole-list options: ranges and unknown options name the option and what is allowed", () => {
  rejects({ strategy: "magcache", max_skip_steps: -1 }, /max_skip_steps must be an integer >= 0/);
  rejects({ strategy: "magcache", threshold: -0.1 }, /threshold must be a number >= 0/);
  rejects({ strategy: "magcache", retention_ratio: 1.5 }, /retention_ratio must be a number in 0..1/);
  rejects({ strategy: "magcache", mag_ratios: [1, 0] }, /each of mag_ratios must be a number > 0/);
  rejects({ strategy: "teacache", rel_l1_thresh: -1 }, /rel_l1_thresh must be a number >= 0/);
  rejects({ strategy: "teacache", coefficients: [] }, /coefficients must not be empty/);
  rejects({ strategy: "easycache", thresh: "high" }, /thresh must be a number >= 0/);
  rejects({ strategy: "easycache", ret_steps: -2 }, /ret_steps must be an integer >= 0/);
  rejects(
    { strategy: "easycache", threshold: 0.1 },
    /unknown easycache option "threshold"; valid options for easycache: strategy, thresh, ret_steps/,
  );
  rejects(
    { strategy: "teacache", cfg_diff_compute_separate: false },
    /teacache: cfg_diff_compute_separate false is not supported/,
  );
});

Deno.test("whole-list options: MagCache and TeaCache take the model's calibration for its sampler and steps", () => {
  const mag = resolveCacheOptions({ strategy: "magcache" }, context());
  assert.equal(mag.strategy, "magcache");
  assert.deepEqual(mag.strategy === "magcache" && mag.mag_ratios, [1, 1.1, 0.9, 1.2]);
  const tea = resolveCacheOptions({ strategy: "teacache", rel_l1_thresh: 0.3 }, context());
  assert.deepEqual(tea.strategy === "teacache" && tea.coefficients, [2, 0]);
  // The request's own figures win over the file's.
  const given = resolveCacheOptions({ strategy: "teacache", coefficients: [1, 0] }, context(4, null));
  assert.deepEqual(given.strategy === "teacache" && given.coefficients, [1, 0]);
  // EasyCache needs none.
  assert.equal(resolveCacheOptions({ strategy: "easycache" }, context(4, null)).strategy, "easycache");
});

Deno.test("whole-list options: without a calibration the error names the calibrate command", () => {
  rejects(
    { strategy: "magcache" },
    /magcache: no calibration for sampler default at 9 steps in weights\/mnist-dit\/cache_calibration.json \(it has default\/4\); make one: deno task calibrate --model weights\/mnist-dit --strategy magcache --sampler default --steps 9/,
    context(9),
  );
  rejects(
    { strategy: "teacache" },
    /teacache: no calibration for sampler default at 4 steps .*; make one: deno task calibrate --model weights\/mnist-dit --strategy teacache/,
    context(4, null),
  );
});

Deno.test("whole-list options: a calibration made for another model is refused with both names", () => {
  rejects(
    { strategy: "magcache" },
    /magcache: weights\/mnist-flux\/cache_calibration.json was made for model "mnist-dit", not "mnist-flux"/,
    context(4, FILE, "mnist-flux"),
  );
});

Deno.test("whole-list options: mag_ratios of another length are resampled as diffusers' nearest_interp", () => {
  // torch.round rounds half to even: 28 ratios onto 10 steps maps i * 3 to indices 0, 3, 6, ..., 27.
  const ratios = Array.from({ length: 28 }, (_, i) => 1 + i / 100);
  assert.deepEqual(nearestInterp(ratios, 10), [0, 3, 6, 9, 12, 15, 18, 21, 24, 27].map((i) => 1 + i / 100));
  // 5 onto 3: scale 2; 5 onto 9: scale 0.5 gives 0, 0.5 -> 0, 1, 1.5 -> 2, 2, 2.5 -> 2, ...
  assert.deepEqual(nearestInterp([10, 11, 12, 13, 14], 9), [10, 10, 11, 12, 12, 12, 13, 14, 14]);
  assert.deepEqual(nearestInterp([10, 11, 12], 1), [12]);
  const resolved = resolveCacheOptions({ strategy: "magcache", mag_ratios: [1, 1.5, 2, 2.5, 3] }, context(9));
  assert.equal(resolved.strategy === "magcache" && resolved.mag_ratios.length, 9);
  assert.match(resolved.notes.join(), /5 ratios resampled onto 9 steps/);
});

Deno.test("teacache's polynomial is numpy's poly1d, highest power first", () => {
  assert.equal(polynomial([2, -3, 1], 2), 3);
  assert.equal(polynomial([5], 7), 5);
});
