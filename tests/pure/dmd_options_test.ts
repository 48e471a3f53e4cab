// calibrator_type "dmd" and its calibrator_kwargs (cache-dit's DMDCalibrator names), resolved and rejected
// with messages naming the field and its range; the calibrator helpers the strategies call.
import assert from "node:assert/strict";
import {
  calibratorHistory,
  calibratorLabel,
  calibratorNeedsHost,
} from "../../src/cache/calibrators/calibrator.ts";
import { CacheOptionsError, resolveCacheOptions } from "../../src/cache/options.ts";

const MODEL = { blocks: 12, steps: 28, channels: 128 };
const DMD = { strategy: "dbcache", enable_calibrator: true, calibrator_type: "dmd" };

function resolved(input: Record<string, unknown>) {
  const o = resolveCacheOptions(input, MODEL);
  assert.ok(o.strategy === "dbcache" || o.strategy === "dbprune");
  return o;
}

function rejects(input: Record<string, unknown>, pattern: RegExp): void {
  assert.throws(() => resolveCacheOptions(input, MODEL), (e: unknown) => {
    assert.ok(e instanceof CacheOptionsError, `expected CacheOptionsError, got ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("options: calibrator_type dmd with cache-dit's defaults, its kwargs, and the notes", () => {
  const defaults = resolved(DMD);
  assert.deepEqual(defaults.calibrator, {
    type: "dmd",
    cache_type: "residual",
    encoder: false,
    history: 6,
    rank: 0,
    ridge: 1e-8,
    n_derivatives: 1,
  });
  assert.deepEqual(defaults.notes, []);
  const given = resolved({
    ...DMD,
    strategy: "dbprune",
    preset: "F2B2",
    calibrator_cache_type: "hidden_states",
    calibrator_kwargs: { history: 3, rank: 2, ridge: 0.01, n_derivatives: 2, svd_precision: "low" },
  });
  assert.deepEqual(given.calibrator, {
    type: "dmd",
    cache_type: "hidden_states",
    encoder: false,
    history: 3,
    rank: 2,
    ridge: 0.01,
    n_derivatives: 2,
  });
  assert.deepEqual(given.notes, [
    "calibrator_kwargs.history 3: the DMD fit needs 4 snapshots, so every forecast is the Taylor fallback",
    'calibrator_kwargs.svd_precision "low" is ignored: the fit takes exact singular values (from the ' +
    "window's Gram matrix), not cache-dit's randomised SVD",
  ]);
  // n_derivatives is one option under two names: either, or both agreeing.
  const topLevel = resolved({ ...DMD, n_derivatives: 3 });
  const agreeing = resolved({ ...DMD, n_derivatives: 3, calibrator_kwargs: { n_derivatives: 3 } });
  assert.ok(topLevel.calibrator?.type === "dmd" && topLevel.calibrator.n_derivatives === 3);
  assert.deepEqual(agreeing.calibrator, topLevel.calibrator);
  const high = resolved({ ...DMD, calibrator_kwargs: { svd_precision: "high" } });
  assert.deepEqual([high.calibrator, high.notes], [defaults.calibrator, []]);
});

Deno.test("bad input: calibrator_kwargs name the field and its range", () => {
  const kwargs = (k: Record<string, unknown>) => ({ ...DMD, calibrator_kwargs: k });
  rejects(kwargs({ history: 0 }), /calibrator_kwargs.history must be an integer in 1..16/);
  rejects(kwargs({ history: 17 }), /calibrator_kwargs.history must be an integer in 1..16/);
  rejects(
    kwargs({ rank: 1.5 }),
    /calibrator_kwargs.rank \(0 = chosen from the spectrum\) must be an integer >= 0/,
  );
  rejects(kwargs({ ridge: -1 }), /calibrator_kwargs.ridge must be a number >= 0/);
  rejects(kwargs({ n_derivatives: 9 }), /calibrator_kwargs.n_derivatives must be an integer in 0..8/);
  rejects(
    kwargs({ svd_precision: "max" }),
    /calibrator_kwargs.svd_precision must be "low", "medium", "high"/,
  );
  rejects(
    kwargs({ window: 4 }),
    /unknown calibrator_kwargs "window"; valid: history, rank, ridge, n_derivatives, svd_precision/,
  );
  rejects({ ...DMD, calibrator_kwargs: 6 }, /calibrator_kwargs must be an object with any of history/);
  rejects(
    { ...DMD, n_derivatives: 2, calibrator_kwargs: { n_derivatives: 3 } },
    /n_derivatives 2 and calibrator_kwargs.n_derivatives 3 are one option under two names/,
  );
  rejects(
    { ...DMD, calibrator_type: "foca", calibrator_kwargs: { history: 4 } },
    /calibrator_kwargs are DMD's \(calibrator_type "dmd"\); foca takes no hyper-parameters/,
  );
  rejects(
    { strategy: "fbcache", calibrator_kwargs: {} },
    /calibrator_kwargs are DMD's \(calibrator_type "dmd"\); taylorseer takes its order as n_derivatives/,
  );
});

Deno.test("calibrator helpers: DMD's label, and it alone needs the host (no GPU-decided form)", () => {
  const dmd = resolved(DMD).calibrator;
  const taylor = resolved({ ...DMD, calibrator_type: "taylorseer" }).calibrator;
  const foca = resolved({ ...DMD, calibrator_type: "foca" }).calibrator;
  assert.equal(calibratorLabel(dmd), " + DMD (residual, history 6)");
  assert.deepEqual([dmd, taylor, foca, null].map(calibratorNeedsHost), [true, false, false, false]);
  assert.throws(() => calibratorHistory(dmd), /DMD runs on the readback path only/);
  assert.equal(calibratorHistory(foca), 1);
});
