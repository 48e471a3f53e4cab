import assert from "node:assert/strict";
import { CacheDecision, type DecisionOptions, type Gate } from "../../src/cache/decision.ts";
import { cacheOptionNames, CacheOptionsError, resolveCacheOptions } from "../../src/cache/options.ts";
import { scmMask } from "../../src/cache/scm.ts";

const BASE: DecisionOptions = {
  residual_diff_threshold: 0.1,
  max_warmup_steps: 1,
  warmup_interval: 1,
  max_cached_steps: -1,
  max_continuous_cached_steps: -1,
  max_accumulated_residual_diff: null,
  mask: null,
  steps_computation_policy: "dynamic",
};

/** Runs the gates over `diffs` (one per step), passing a diff only where one is needed. */
function run(options: Partial<DecisionOptions>, diffs: number[]) {
  const decision = new CacheDecision({ ...BASE, ...options });
  const cached: number[] = [];
  const gates: Gate[] = [];
  const measured: number[] = [];
  diffs.forEach((diff, step) => {
    const needs = decision.needsDiff(step);
    if (needs) measured.push(step);
    const d = decision.decide(step, needs ? diff : null);
    if (d.cached) cached.push(step);
    gates.push(d.gate);
  });
  return { cached, gates, measured, decision };
}

const flat = (steps: number, diff = 0.01) => new Array(steps).fill(diff);
const bits = (s: string) => [...s].map(Number) as (0 | 1)[];

Deno.test("warmup: steps 0..max_warmup_steps-1 compute, then similar steps cache", () => {
  const r = run({ max_warmup_steps: 3 }, flat(8));
  assert.deepEqual(r.cached, [3, 4, 5, 6, 7]);
  assert.deepEqual(r.gates.slice(0, 3), ["warmup", "warmup", "warmup"]);
  assert.deepEqual(r.measured, [3, 4, 5, 6, 7], "no diff is read during warmup");
});

Deno.test("warmup_interval 2 under max 6 computes steps 0, 2, 4 only", () => {
  const r = run({ max_warmup_steps: 6, warmup_interval: 2 }, flat(8));
  assert.deepEqual(r.cached, [1, 3, 5, 6, 7]);
  assert.deepEqual([0, 2, 4].map((s) => r.gates[s]), ["warmup", "warmup", "warmup"]);
});

Deno.test("without warmup the first step computes: nothing is stored yet", () => {
  const r = run({ max_warmup_steps: 0 }, flat(3));
  assert.deepEqual(r.cached, [1, 2]);
  assert.equal(r.gates[0], "no_reference");
});

Deno.test("max_cached_steps caps the total number of cached steps", () => {
  const r = run({ max_warmup_steps: 2, max_cached_steps: 2 }, flat(8));
  assert.deepEqual(r.cached, [2, 3]);
  assert.deepEqual(r.gates.slice(4), new Array(4).fill("max_cached_steps"));
  assert.deepEqual(run({ max_cached_steps: 0 }, flat(4)).cached, []);
});

Deno.test("max_continuous_cached_steps: the run of cached steps resets on every computed step", () => {
  const r = run({ max_continuous_cached_steps: 2 }, flat(8));
  assert.deepEqual(r.cached, [1, 2, 4, 5, 7]);
  assert.deepEqual([3, 6].map((s) => r.gates[s]), [
    "max_continuous_cached_steps",
    "max_continuous_cached_steps",
  ]);
  // A step computed for another reason (a diff over the threshold) also resets the run.
  assert.deepEqual(run({ max_continuous_cached_steps: 2 }, [0, 0.01, 0.5, 0.01, 0.01, 0.01]).cached, [
    1,
    3,
    4,
  ]);
});

Deno.test("max_accumulated_residual_diff: once the sum of measured diffs reaches it, every step computes", () => {
  const r = run({ max_accumulated_residual_diff: 0.1 }, flat(7, 0.04));
  assert.deepEqual(r.cached, [1, 2, 3]);
  assert.deepEqual(r.measured, [1, 2, 3]);
  assert.ok(Math.abs(r.decision.accumulatedDiff - 0.12) < 1e-12);
  assert.deepEqual(r.gates.slice(4), new Array(3).fill("max_accumulated_residual_diff"));
});

Deno.test("threshold: cache iff diff < threshold (strict), drift measured per step", () => {
  const r = run({}, [0, 0.05, 0.2, 0.05, 0.1, 0.09999, 0.11]);
  assert.deepEqual(r.cached, [1, 3, 5]);
  assert.deepEqual(r.gates, [
    "warmup",
    "similar",
    "not_similar",
    "similar",
    "not_similar",
    "similar",
    "not_similar",
  ]);
});

Deno.test("threshold 0 never caches and never needs a diff", () => {
  const r = run({ residual_diff_threshold: 0 }, flat(6, 0));
  assert.deepEqual(r.cached, []);
  assert.deepEqual(r.measured, []);
  assert.equal(r.gates[5], "threshold_off");
});

Deno.test("decide throws when the threshold gate is reached without a diff", () => {
  const d = new CacheDecision(BASE);
  d.decide(0, null);
  assert.throws(() => d.decide(1, null), /step 1 needs the measured residual diff/);
});

Deno.test("SCM dynamic: mask 1 computes, mask 0 falls through to the other gates", () => {
  const r = run({ mask: bits("100100"), max_warmup_steps: 0 }, [0, 0.05, 0.5, 0.01, 0.05, 0.05]);
  assert.deepEqual(r.cached, [1, 4, 5]);
  assert.deepEqual(r.gates.slice(0, 4), ["no_reference", "similar", "not_similar", "mask_compute"]);
});

Deno.test("SCM static: mask 0 caches outright, skipping the limits and the diff", () => {
  const options = { mask: bits("100100"), steps_computation_policy: "static" as const, max_cached_steps: 1 };
  const r = run(options, [0, 0.5, 0.5, 0.5, 0.5, 0.5]);
  assert.deepEqual(r.cached, [1, 2, 4, 5]);
  assert.deepEqual(r.measured, []);
  assert.equal(r.gates[1], "mask_static");
  // Warmup still comes first.
  assert.deepEqual(run({ ...options, max_warmup_steps: 3 }, flat(6)).cached, [4, 5]);
});

Deno.test("residual_diff_threshold 0 turns off the diff, not a static mask: its 0 steps still cache", () => {
  const mask = bits("110100");
  const statically = run({ mask, steps_computation_policy: "static", residual_diff_threshold: 0 }, flat(6));
  assert.deepEqual(statically.cached, [2, 4, 5]);
  assert.deepEqual(statically.measured, []);
  const dynamically = run({ mask, residual_diff_threshold: 0 }, flat(6));
  assert.deepEqual(dynamically.cached, []);
  assert.deepEqual([2, 4, 5].map((s) => dynamically.gates[s]), new Array(3).fill("threshold_off"));
});

Deno.test("SCM presets at 28 steps are the doc's bins", () => {
  const expand = (compute: number[], cache: number[]) =>
    compute.flatMap((n, i) => [...new Array(n).fill(1), ...new Array(cache[i] ?? 0).fill(0)]);
  assert.deepEqual(scmMask("slow", 28), expand([8, 3, 3, 2, 1, 1], [1, 2, 2, 2, 3]));
  assert.deepEqual(scmMask("medium", 28), expand([6, 2, 2, 2, 2, 1], [1, 3, 3, 3, 3]));
  assert.deepEqual(scmMask("fast", 28), expand([6, 1, 1, 1, 1, 1], [1, 3, 4, 5, 4]));
  assert.deepEqual(scmMask("ultra", 28), expand([4, 1, 1, 1, 1], [2, 5, 6, 7]));
  assert.equal(scmMask("slow", 28).join(""), "1111111101110011100110010001");
});

Deno.test("SCM presets scale to other step counts by their bin boundaries", () => {
  const doubled = scmMask("fast", 28).flatMap((b) => [b, b]);
  assert.deepEqual(scmMask("fast", 56), doubled);
  // slow at 14: boundaries 8,9,12,14,17,19,21,23,24,27,28 halve to 4,5,6,7,9,10,11,12,12,14,14 (round half up).
  assert.equal(scmMask("slow", 14).join(""), "11110101101000");
  for (const steps of [1, 5, 13, 50]) {
    for (const p of ["slow", "medium", "fast", "ultra"] as const) {
      assert.equal(scmMask(p, steps).length, steps);
    }
  }
  assert.equal(scmMask("ultra", 50)[0], 1);
});

const MODEL = { blocks: 12, steps: 28, channels: 128 };

Deno.test("defaults: fbcache F1B0 0.08 warmup 8 max 8; dbcache F8B0 0.08 warmup 8; none", () => {
  const fb = resolveCacheOptions({ strategy: "fbcache" }, MODEL);
  assert.ok(fb.strategy === "fbcache");
  assert.deepEqual(
    [fb.Fn, fb.Bn, fb.residual_diff_threshold, fb.max_warmup_steps, fb.warmup_interval, fb.max_cached_steps],
    [1, 0, 0.08, 8, 1, 8],
  );
  const db = resolveCacheOptions({ strategy: "dbcache" }, MODEL);
  assert.ok(db.strategy === "dbcache");
  assert.deepEqual(
    [db.Fn, db.Bn, db.residual_diff_threshold, db.max_warmup_steps, db.max_cached_steps, db.mask, db.notes],
    [8, 0, 0.08, 8, -1, null, []],
  );
  assert.equal(db.steps_computation_policy, "dynamic");
  assert.equal(db.calibrator, null);
  assert.deepEqual(resolveCacheOptions({ strategy: "none" }, MODEL), { strategy: "none", notes: [] });
  assert.deepEqual(resolveCacheOptions({}, MODEL).strategy, "none");
  const prune = resolveCacheOptions({ strategy: "dbprune" }, { blocks: 24, steps: 28, channels: 128 });
  assert.ok(prune.strategy === "dbprune");
  assert.deepEqual([prune.Fn, prune.Bn, prune.max_dynamic_prune_threshold], [8, 8, 0.16]);
});

Deno.test("presets set Fn/Bn; explicit Fn/Bn override them; a preset too big for the model is clamped", () => {
  const f1 = resolveCacheOptions(
    { strategy: "dbcache", preset: "F1B0", residual_diff_threshold: 0.2 },
    MODEL,
  );
  assert.ok(f1.strategy === "dbcache");
  assert.deepEqual([f1.Fn, f1.Bn, f1.residual_diff_threshold], [1, 0, 0.2]);
  const over = resolveCacheOptions({ strategy: "dbcache", preset: "F8B8", Bn: 2 }, MODEL);
  assert.ok(over.strategy === "dbcache");
  assert.deepEqual([over.Fn, over.Bn], [8, 2]);
  const clamped = resolveCacheOptions({ strategy: "dbcache", preset: "F12B12" }, MODEL);
  assert.ok(clamped.strategy === "dbcache");
  assert.deepEqual([clamped.Fn, clamped.Bn], [6, 5]);
  assert.deepEqual(clamped.notes, [
    "preset F12B12 asks for 24 blocks but the model has 12: clamped to F6B5",
  ]);
  const prune = resolveCacheOptions({ strategy: "dbprune" }, MODEL);
  assert.match(prune.notes[0], /default F8B8 asks for 16 blocks but the model has 12: clamped to F6B5/);
});

Deno.test("options: taylorseer, warmup_steps alias, named and custom masks", () => {
  const r = resolveCacheOptions({
    strategy: "dbcache",
    enable_taylorseer: true,
    n_derivatives: 2,
    taylorseer_cache_type: "hidden_states",
    warmup_steps: 3,
    steps_computation_mask: "fast",
    steps_computation_policy: "static",
  }, MODEL);
  assert.ok(r.strategy === "dbcache");
  assert.deepEqual(r.calibrator, {
    type: "taylorseer",
    cache_type: "hidden_states",
    n_derivatives: 2,
    encoder: false,
  });
  assert.deepEqual([r.max_warmup_steps, r.warmup_interval], [3, 1]);
  assert.deepEqual(r.mask, scmMask("fast", 28));
  const custom = resolveCacheOptions({ strategy: "fbcache", steps_computation_mask: [1, 0, 1] }, {
    blocks: 2,
    steps: 3,
    channels: 8,
  });
  assert.ok(custom.strategy === "fbcache");
  assert.deepEqual(custom.mask, [1, 0, 1]);
  // As in the reference, the warmup (default 8) ends at the mask's first 0, and says so.
  assert.equal(custom.max_warmup_steps, 1);
  assert.deepEqual(custom.notes, ["max_warmup_steps 8 ends at the mask's first cache step: 1"]);
});

function rejects(input: unknown, pattern: RegExp, context = MODEL): void {
  assert.throws(() => resolveCacheOptions(input, context), (e: unknown) => {
    assert.ok(e instanceof CacheOptionsError, `expected CacheOptionsError, got ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("bad input: unknown strategy and unknown options name themselves and the valid ones", () => {
  rejects(
    { strategy: "pab" },
    /cache strategy "pab" is unknown; valid strategies: none, fbcache, dbcache, dbprune, magcache, teacache, easycache$/,
  );
  rejects(
    { strategy: "dbcache", Fm: 2 },
    /unknown dbcache option "Fm"; valid options for dbcache: strategy, preset, Fn, Bn, residual_diff_threshold/,
  );
  rejects(
    { strategy: "fbcache", Fn: 2 },
    /unknown fbcache option "Fn"; valid options for fbcache: .*max_cached_steps/,
  );
  rejects(
    { strategy: "dbcache", max_pruned_steps: 2, x: 1 },
    /unknown dbcache options "max_pruned_steps", "x"/,
  );
  rejects(
    { strategy: "none", residual_diff_threshold: 0.1 },
    /unknown none option "residual_diff_threshold"; valid options for none: strategy$/,
  );
  rejects("fbcache", /cache options must be an object/);
  assert.ok(cacheOptionNames("dbprune").includes("residual_cache_update_interval"));
});

Deno.test("bad input: ranges and types name the option and the allowed range", () => {
  rejects(
    { strategy: "dbcache", residual_diff_threshold: -0.1 },
    /residual_diff_threshold: residual_diff_threshold must be a number >= 0/,
  );
  rejects(
    { strategy: "dbcache", non_compute_blocks_diff_threshold: -1 },
    /non_compute_blocks_diff_threshold must be a number >= 0/,
  );
  rejects(
    { strategy: "dbprune", max_dynamic_prune_threshold: -1 },
    /max_dynamic_prune_threshold must be a number >= 0/,
  );
  rejects(
    { strategy: "dbcache", max_accumulated_residual_diff: -1 },
    /max_accumulated_residual_diff must be a number >= 0/,
  );
  rejects(
    { strategy: "dbcache", max_cached_steps: -2 },
    /max_cached_steps \(-1 = no limit\) must be an integer >= -1/,
  );
  rejects({ strategy: "dbcache", warmup_interval: 0 }, /warmup_interval must be an integer >= 1/);
  rejects({ strategy: "dbcache", Fn: 0 }, /Fn must be an integer >= 1/);
  rejects({ strategy: "dbcache", Fn: 1.5 }, /Fn must be an integer >= 1/);
  rejects({ strategy: "dbcache", n_derivatives: 9 }, /n_derivatives must be an integer in 0..8/);
  rejects({ strategy: "dbcache", downsample_factor: 0 }, /downsample_factor must be an integer >= 1/);
  rejects({ strategy: "dbcache", preset: "F8" }, /preset must look like "F8B0"/);
  rejects({ strategy: "dbcache", preset: "F0B4" }, /preset F0B4 needs Fn >= 1/);
  rejects(
    { strategy: "dbcache", steps_computation_mask: "turbo" },
    /steps_computation_mask must be one of slow, medium, fast, ultra or a list of 0\/1/,
  );
  rejects(
    { strategy: "dbcache", steps_computation_policy: "lazy" },
    /steps_computation_policy must be "static" or "dynamic"/,
  );
  rejects(
    { strategy: "dbcache", taylorseer_cache_type: "x" },
    /taylorseer_cache_type must be "residual" or "hidden_states"/,
  );
  rejects(
    { strategy: "dbprune", enable_dynamic_prune_threshold: "yes" },
    /enable_dynamic_prune_threshold must be true or false/,
  );
  rejects(
    { strategy: "dbcache", warmup_steps: 2, max_warmup_steps: 4 },
    /give warmup_steps \(0.2.x\) or max_warmup_steps \+ warmup_interval, not both/,
  );
});

Deno.test("bad input: what needs the model and the request", () => {
  rejects(
    { strategy: "dbcache", Fn: 8, Bn: 8 },
    /dbcache: Fn 8 \+ Bn 8 = 16 is more than the model's 12 blocks; Fn \+ Bn must be in 1..12/,
  );
  rejects(
    { strategy: "dbprune", Fn: 13 },
    /dbprune: Fn 13 \+ Bn 8 = 21 is more than the model's 12 blocks; Fn \+ Bn must be in 0..12/,
  );
  rejects(
    { strategy: "dbcache", steps_computation_mask: [1, 0, 1] },
    /steps_computation_mask has 3 entries but the request has 28 steps; give exactly 28/,
  );
  rejects(
    { strategy: "dbprune", non_prune_blocks_ids: [3, 12, 40] },
    /non_prune_blocks_ids \[12, 40\] out of range: block indices of the model, allowed 0..11/,
  );
  rejects(
    { strategy: "dbcache", Fn: 2, Bn: 3, Bn_compute_blocks_ids: [0, 3] },
    /Bn_compute_blocks_ids \[3\] out of range: indices into the last Bn = 3 blocks, allowed 0..2/,
  );
  rejects(
    { strategy: "dbcache", Bn_compute_blocks_ids: [0] },
    /Bn_compute_blocks_ids \[0\] out of range: indices into the last Bn = 0 blocks, allowed empty/,
  );
  rejects(
    { strategy: "dbprune", non_prune_blocks_ids: [-1] },
    /each of non_prune_blocks_ids must be an integer >= 0/,
  );
  rejects(
    { strategy: "fbcache", downsample_factor: 129 },
    /fbcache: downsample_factor 129 is more than the model's 128 channels; allowed 1..128/,
  );
  const widest = resolveCacheOptions({ strategy: "dbcache", downsample_factor: 128 }, MODEL);
  assert.ok(widest.strategy === "dbcache" && widest.downsample_factor === 128);
});

Deno.test("options: calibrator_type foca, cache-dit's generic calibrator names, n_derivatives noted as unused", () => {
  const foca = resolveCacheOptions({
    strategy: "dbprune",
    calibrator_type: "foca",
    enable_calibrator: true,
    enable_encoder_calibrator: true,
    calibrator_cache_type: "hidden_states",
  }, MODEL);
  assert.ok(foca.strategy === "dbprune");
  assert.deepEqual(foca.calibrator, { type: "foca", cache_type: "hidden_states", encoder: true });
  assert.ok(!foca.notes.some((n) => n.includes("n_derivatives")), "no note without n_derivatives");
  const generic = resolveCacheOptions({ strategy: "fbcache", enable_calibrator: true }, MODEL);
  const named = resolveCacheOptions({ strategy: "fbcache", enable_taylorseer: true }, MODEL);
  assert.ok(generic.strategy === "fbcache" && named.strategy === "fbcache");
  assert.deepEqual(generic.calibrator, {
    type: "taylorseer",
    cache_type: "residual",
    n_derivatives: 1,
    encoder: false,
  });
  assert.deepEqual(generic.calibrator, named.calibrator);
  const both = resolveCacheOptions(
    {
      strategy: "dbcache",
      enable_taylorseer: true,
      enable_calibrator: true,
      calibrator_type: "foca",
      n_derivatives: 3,
    },
    MODEL,
  );
  assert.ok(both.strategy === "dbcache");
  assert.deepEqual(both.calibrator, { type: "foca", cache_type: "residual", encoder: false });
  assert.deepEqual(both.notes, [
    "n_derivatives 3 is ignored: FoCa has no hyper-parameters (cache-dit's FoCa calibrator ignores it too)",
  ]);
  const off = resolveCacheOptions({ strategy: "dbcache", calibrator_type: "foca" }, MODEL);
  assert.ok(off.strategy === "dbcache");
  assert.equal(off.calibrator, null);
  assert.deepEqual(off.notes, [
    "calibrator_type foca: no calibrator runs without enable_calibrator (or enable_taylorseer) true",
  ]);
});

Deno.test("bad input: a calibrator option given under both names with different values names both", () => {
  rejects(
    { strategy: "dbcache", enable_taylorseer: true, enable_calibrator: false },
    /dbcache: enable_taylorseer true and enable_calibrator false are one option under two names/,
  );
  rejects(
    {
      strategy: "dbprune",
      enable_taylorseer: true,
      enable_encoder_taylorseer: false,
      enable_encoder_calibrator: true,
    },
    /dbprune: enable_encoder_taylorseer false and enable_encoder_calibrator true are one option/,
  );
  rejects(
    { strategy: "fbcache", taylorseer_cache_type: "residual", calibrator_cache_type: "hidden_states" },
    /fbcache: taylorseer_cache_type "residual" and calibrator_cache_type "hidden_states" are one option/,
  );
  rejects(
    { strategy: "dbcache", calibrator_type: "pab" },
    /calibrator_type must be "taylorseer", "foca" or "dmd"/,
  );
  rejects(
    { strategy: "dbcache", calibrator_cache_type: "output" },
    /calibrator_cache_type must be "residual" or "hidden_states"/,
  );
  rejects({ strategy: "dbcache", enable_calibrator: 1 }, /enable_calibrator must be true or false/);
});
