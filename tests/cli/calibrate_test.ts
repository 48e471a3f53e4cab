// deno task calibrate end to end on a copy of the embedded mnist-dit: bad flags, the file it writes and
// merges, and what a generation does with it (a calibrated strategy runs; a missing, foreign or malformed
// calibration is refused naming the file, the model or the command).
import assert from "node:assert/strict";
import { runCli } from "../support/cli.ts";
import { copyTree, withTempDir } from "../support/temp.ts";

const BAD_FLAGS: [string[], RegExp][] = [
  [["--strategy", "magcache"], /^--model DIR is required/],
  [["--model", "weights/mnist-dit", "--strategy", "pab"], /^--strategy pab: one of magcache, teacache$/],
  [
    ["--model", "weights/mnist-dit", "--strategy", "magcache", "--runs", "0"],
    /^--runs 0: must be an integer >= 1$/,
  ],
  [
    ["--model", "weights/mnist-dit", "--strategy", "magcache", "--steps", "0"],
    /^--steps 0: must be an integer >= 2 \(a calibration compares consecutive steps\)$/,
  ],
  [["--model", "weights/none", "--strategy", "teacache"], /^weights\/none: directory not found$/],
];

for (const [args, message] of BAD_FLAGS) {
  Deno.test(`calibrate ${args.join(" ")}: one-line error, exit code 2`, async () => {
    const result = await runCli("calibrate", args);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, message);
  });
}

Deno.test("calibrate writes and merges cache_calibration.json, and generations use it or refuse it", () =>
  withTempDir(async (tmp) => {
    const dir = `${tmp}/mnist-dit`;
    await copyTree("weights/mnist-dit", dir);
    await Deno.remove(`${dir}/cache_calibration.json`);
    const generate = (cache: string, steps = "4") =>
      runCli("generate", [
        "--model",
        dir,
        "--label",
        "3",
        "--steps",
        steps,
        "--cache",
        cache,
        "--out",
        `${tmp}/x.png`,
      ]);
    const missing = await generate('{"strategy":"magcache"}');
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(
      missing.stderr,
      new RegExp(
        `make one: deno task calibrate --model ${dir} --strategy magcache --sampler euler --steps 4$`,
      ),
    );

    for (const strategy of ["magcache", "teacache"]) {
      const run = await runCli("calibrate", [
        "--model",
        dir,
        "--strategy",
        strategy,
        "--steps",
        "4",
        "--runs",
        "2",
      ]);
      assert.equal(run.code, 0, run.stderr);
    }
    const file = JSON.parse(await Deno.readTextFile(`${dir}/cache_calibration.json`));
    assert.equal(file.model, "mnist-dit");
    assert.deepEqual(
      file.calibrations.map((c: { strategy: string; steps: number }) => [c.strategy, c.steps]),
      [
        ["magcache", 4],
        ["teacache", 4],
      ],
    );
    const [mag, tea] = file.calibrations;
    assert.equal(mag.mag_ratios.length, 4);
    assert.equal(mag.mag_ratios[0], 1);
    assert.ok(mag.mag_ratios.slice(1).every((r: number) => r > 0 && r !== 1), `${mag.mag_ratios}`);
    assert.equal(tea.coefficients.length, 5);

    for (const strategy of ["magcache", "teacache"]) {
      const ok = await generate(`{"strategy":"${strategy}"}`);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(JSON.parse(ok.stdout).cache.steps, 4);
    }
    const otherSteps = await generate('{"strategy":"teacache"}', "6");
    assert.match(otherSteps.stderr, /no calibration for sampler euler at 6 steps .* \(it has euler\/4\)/);

    await Deno.writeTextFile(
      `${dir}/cache_calibration.json`,
      JSON.stringify({ ...file, model: "mnist-flux" }),
    );
    const foreign = await generate('{"strategy":"magcache"}');
    assert.equal(foreign.code, 2, foreign.stderr);
    assert.match(foreign.stderr, /was made for model "mnist-flux", not "mnist-dit"/);

    await Deno.writeTextFile(`${dir}/cache_calibration.json`, '{"model": "mnist-dit"}');
    const malformed = await generate("none");
    assert.equal(malformed.code, 2, malformed.stderr);
    assert.match(malformed.stderr, /cache_calibration\.json: calibrations/);
  }));
