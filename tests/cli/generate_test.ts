import assert from "node:assert/strict";
import { decode } from "fast-png";
import { withTempDir } from "../support/temp.ts";

async function generateCli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-read", "--allow-env", "--allow-write", "src/cli/generate.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr).trim() };
}

const BAD_INPUT: [string[], RegExp][] = [
  [["--label", "11"], /^label: unknown class "11"; valid: 0, 1, .*9 \(or zero, .*nine\)$/],
  [["--label", "seventeen"], /^label: unknown class "seventeen"/],
  [["--label", "7", "--steps", "0"], /^steps: steps must be in 1\.\.1000$/],
  [["--label", "7", "--steps", "1001"], /^steps: steps must be in 1\.\.1000$/],
  [["--label", "7", "--guidance", "30.5"], /^guidance: guidance must be in 0\.\.30$/],
  [["--label", "7", "--guidance=-1"], /^guidance: guidance must be in 0\.\.30$/],
  [["--label", "7", "--seed", "1.5"], /^seed: seed must be an integer in 0\.\.4294967295$/],
  [["--label", "7", "--seed", "abc"], /^seed: seed must be an integer in 0\.\.4294967295$/],
  [["--label", "7", "--sampler", "heun"], /^sampler: "heun" is not one of euler, ddim$/],
  [["--label", "7", "--cache", "warp"], /^cache: cache strategy "warp" is unknown; valid strategies: none, /],
  [
    ["--label", "7", "--cache", '{"strategy":"dbcache","Fn":10,"Bn":5}'],
    /^cache: dbcache: Fn 10 \+ Bn 5 = 15 .*1\.\.12$/,
  ],
  [
    ["--label", "7", "--cache", '{"strategy":"fbcache","thresh":1}'],
    /^cache: unknown fbcache option "thresh"; valid/,
  ],
  [["--label", "7", "--cache", "{oops"], /^cache: not a JSON object/],
];

for (const [args, message] of BAD_INPUT) {
  Deno.test(`generate ${args.join(" ")}: one-line error, exit code 2, no image written`, () =>
    withTempDir(async (dir) => {
      const out = `${dir}/x.png`;
      const result = await generateCli([...args, "--out", out]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(result.stderr.split("\n").length, 1);
      assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing written");
    }));
}

Deno.test("generate: a missing weights directory is named, exit code 2", () =>
  withTempDir(async (dir) => {
    const result = await generateCli(["--label", "7", "--model", `${dir}/none`, "--out", `${dir}/x.png`]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /\/none: directory not found$/);
  }));

Deno.test("generate --cache fbcache: cached steps and block savings are in the JSON stats", () =>
  withTempDir(async (dir) => {
    const cache = {
      strategy: "fbcache",
      residual_diff_threshold: 10,
      max_warmup_steps: 1,
      max_cached_steps: -1,
    };
    const args = ["--label", "1", "--steps", "4", "--guidance", "1", "--cache", JSON.stringify(cache)];
    const result = await generateCli([...args, "--out", `${dir}/one.png`]);
    assert.equal(result.code, 0, result.stderr);
    const stats = JSON.parse(result.stdout).cache;
    assert.deepEqual(stats.cachedSteps, [1, 2, 3]);
    assert.deepEqual(stats.computedSteps, [0]);
    assert.equal(stats.blocksExecuted, 12 + 3 * 1);
    assert.equal(stats.blocksTotal, 4 * 12);
    assert.ok(stats.memoryBytes > 0);
  }));

Deno.test("generate --grid writes one PNG with every class side by side and prints JSON stats", () =>
  withTempDir(async (dir) => {
    const out = `${dir}/grid.png`;
    const result = await generateCli([
      "--grid",
      "--steps",
      "2",
      "--seed",
      "5",
      "--guidance",
      "1",
      "--out",
      out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const stats = JSON.parse(result.stdout);
    assert.equal(stats.steps, 2);
    assert.equal(stats.images, 10);
    assert.ok(stats.seconds > 0 && typeof stats.adapter === "string");
    const png = decode(await Deno.readFile(out));
    assert.deepEqual([png.width, png.height, png.channels], [280, 28, 1]);
  }));
