import assert from "node:assert/strict";
import { runCli } from "../support/cli.ts";
import { decode } from "fast-png";
import { readFloat32Tensors } from "../../src/model/safetensors.ts";
import { withTempDir } from "../support/temp.ts";
import { decodeVideo, probeVideo, psnr, yuv420pRoundTrip } from "../support/video.ts";

// deno task generate's permissions.
const generateCli = (args: string[]) =>
  runCli("generate", args, ["--allow-read", "--allow-env", "--allow-write", "--allow-run=ffmpeg"]);

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

const WAN = [
  ...[
    "--model",
    "tests/fixtures/wan/pipeline",
    "--prompt-embeds",
    "tests/fixtures/wan/pipeline-run.safetensors",
  ],
];

/** Video output: the file --out names must suit the model, and the frames its rule. */
const BAD_VIDEO_INPUT: [string[], RegExp][] = [
  [["--label", "7", "--out", "x.mp4"], /^--out must name a \.png file: MnistDiT draws images$/m],
  [
    ["--label", "7", "--frames", "5", "--out", "x.png"],
    /^frames: MnistDiT draws images, not videos: it takes no frames$/,
  ],
  [[...WAN, "--out", "x.avi"], /^--out must name a \.mp4, \.gif, \.webp file: WanPipeline draws videos$/],
  [[...WAN, "--out", "x.png"], /^--out must name a \.mp4, \.gif, \.webp file: WanPipeline draws videos$/],
  [
    [...WAN, "--frames", "8", "--out", "x.mp4"],
    /^frames: 8 is not 4k\+1; WanPipeline takes 4k\+1 frames \(1, 5, 9, \.\.\., 81\): its VAE packs 4 frames/,
  ],
  [[...WAN, "--fps", "0", "--out", "x.gif"], /^fps: fps must be in 1\.\.120$/],
  [[...WAN, "--n", "2", "--out", "x.gif"], /^n: WanPipeline draws one video per request, not 2$/],
  [
    [...WAN, "--frames", "85", "--width", "1280", "--height", "720", "--out", "x.mp4"],
    /^frames: 85 frames of 1280x720 are 78336000 pixels; the limit is 74649600 \(frames x width x height\)/,
  ],
];

for (const [args, message] of BAD_VIDEO_INPUT) {
  Deno.test(`generate ${args.filter((a) => !WAN.includes(a)).join(" ")}: one-line error, exit code 2, nothing written`, () =>
    withTempDir(async (dir) => {
      const result = await generateCli(args.map((a) => a.startsWith("x.") ? `${dir}/${a}` : a));
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, message);
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

Deno.test("generate a video model's --out x.mp4: the H.264 file holds the pipeline's frames (--out-tensor)", () =>
  withTempDir(async (dir) => {
    const [out, tensor] = [`${dir}/fox.mp4`, `${dir}/fox.safetensors`];
    const args = ["--frames", "9", "--steps", "2", "--width", "48", "--height", "32", "--fps", "8"];
    const result = await generateCli([...WAN, ...args, "--out", out, "--out-tensor", tensor]);
    assert.equal(result.code, 0, result.stderr);
    const stats = JSON.parse(result.stdout);
    assert.deepEqual([stats.frames, stats.fps, stats.format, stats.size], [9, 8, "mp4", "48x32"]);
    // [frames, H, W, 3] in [0, 1]: what the pipeline decoded, the frames and size asked.
    const frames = (await readFloat32Tensors(tensor)).get("images")!;
    const [count, height, width] = frames.shape;
    assert.deepEqual([count, height, width], [9, 32, 48]);
    const mp4 = await Deno.readFile(out);
    const probed = await probeVideo(mp4, ".mp4");
    assert.deepEqual(
      [probed.codec, probed.pixFmt, probed.frames, probed.width, probed.height, probed.frameRate],
      ["h264", "yuv420p", count, width, height, "8/1"],
    );
    // Random-weight frames are noise-like, which 4:2:0 chroma alone takes to ~17 dB: the decoded file is
    // compared with the frames after that conversion (x264 at quality 18 then keeps > 30 dB; frames sent in
    // the wrong channel order or layout would not).
    const expected = Uint8Array.from(frames.data, (v) => Math.round(v * 255));
    const value = psnr(await decodeVideo(mp4, ".mp4"), await yuv420pRoundTrip(expected, width, height));
    assert.ok(value > 30, `PSNR ${value.toFixed(2)} dB against the frames through yuv420p`);
  }));
