// The CLI on diffusers directories: deno task generate --model on a DiTPipeline with diffusers' latents and
// --out-tensor gives diffusers' np images; deno task forward runs one component on inputs named like the
// diffusers forward arguments and writes output.sample; bad input is one line naming the tensor or file.
import assert from "node:assert/strict";
import { runCli } from "../support/cli.ts";
import { readFloat32Tensors } from "../../src/model/safetensors.ts";
import { encodeSafetensors } from "../../src/model/safetensors_writer.ts";
import { assertClose } from "../support/assert_close.ts";
import { fixtureTensor, readFixture } from "../support/fixtures.ts";
import { withTempDir } from "../support/temp.ts";

const FIXTURES = "tests/fixtures/diffusers";
// As in tests/model (the same computation, run by the CLI).
const TOL = { atol: 5e-4, rtol: 0 };

Deno.test("generate --model DIT_PIPELINE --latents --class --out-tensor: diffusers' images", () =>
  withTempDir(async (dir) => {
    const run = await readFixture(`${FIXTURES}/dit-pipeline-run-4.safetensors`);
    const latents = `${dir}/latents.safetensors`;
    // Two images need two --class values: the CLI draws one class, so only the first latent is used.
    const one = fixtureTensor(run, "latents").subarray(0, 4 * 8 * 8);
    await Deno.writeFile(latents, encodeSafetensors({ latents: { shape: [1, 4, 8, 8], data: one } }));
    const args = ["--model", `${FIXTURES}/dit-pipeline`, "--class", "golden retriever", "--latents", latents];
    const result = await runCli("generate", [
      ...args,
      "--steps",
      "5",
      "--guidance",
      "4",
      "--out",
      `${dir}/x.png`,
      "--out-tensor",
      `${dir}/x.safetensors`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout).labels, ["golden retriever"]);
    const images = (await readFloat32Tensors(`${dir}/x.safetensors`)).get("images")!;
    assert.deepEqual(images.shape, [1, 16, 16, 3]);
    assertClose(images.data, fixtureTensor(run, "images").subarray(0, 16 * 16 * 3), TOL, "images");
    // Latents of another shape name both shapes; nothing is written.
    await Deno.writeFile(
      latents,
      encodeSafetensors({ latents: { shape: [1, 4, 4, 4], data: new Float32Array(64) } }),
    );
    const bad = await runCli("generate", [...args, "--out", `${dir}/y.png`]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^latents: latents hold 64 values; the model takes \[1, 4, 8, 8\]/);
    const unknown = await runCli("generate", [
      "--model",
      `${FIXTURES}/dit-pipeline`,
      "--class",
      "1000",
      "--out",
      `${dir}/y.png`,
    ]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^label: unknown class "1000"; valid: a class id in 0..999/);
    assert.equal(
      [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith("y")).length,
      0,
      "nothing written",
    );
  }));

for (const component of ["dit-a", "dit-b", "vae-a", "vae-b"]) {
  Deno.test(`forward --model ${component}: output.sample as diffusers computes it`, () =>
    withTempDir(async (dir) => {
      const isVae = component.startsWith("vae");
      const fixture = await readFixture(
        `${FIXTURES}/${component}-${isVae ? "decode" : "forward"}.safetensors`,
      );
      const names = isVae ? ["z"] : ["hidden_states", "timestep", "class_labels"];
      const inputs = Object.fromEntries(names.map((n) => [n, fixture.tensors.get(n)!]));
      await Deno.writeFile(`${dir}/in.safetensors`, encodeSafetensors(inputs));
      const model = `${FIXTURES}/${component}${isVae ? "" : "/transformer"}`;
      const result = await runCli("forward", [
        "--model",
        model,
        "--inputs",
        `${dir}/in.safetensors`,
        "--out",
        `${dir}/out.safetensors`,
      ]);
      assert.equal(result.code, 0, result.stderr);
      const sample = (await readFloat32Tensors(`${dir}/out.safetensors`)).get("sample")!;
      assertClose(sample.data, fixtureTensor(fixture, "sample"), { atol: 2e-4, rtol: 2e-4 }, "sample");
    }));
}

Deno.test("generate --model FLUX_PIPELINE --prompt-embeds --latents --height --width: diffusers' images", () =>
  withTempDir(async (dir) => {
    const inputs = "tests/fixtures/flux/pipeline-run.safetensors";
    const run = await readFixture(inputs);
    // One file holds the embeddings and the packed latents, as diffusers' arguments name them.
    const args = ["--model", "tests/fixtures/flux/pipeline", "--prompt-embeds", inputs, "--latents", inputs];
    const sized = [...args, "--height", "32", "--width", "48", "--steps", "4", "--guidance", "3.5"];
    const result = await runCli("generate", [
      ...sized,
      "--out",
      `${dir}/x.png`,
      "--out-tensor",
      `${dir}/x.safetensors`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).size, "48x32");
    const images = (await readFloat32Tensors(`${dir}/x.safetensors`)).get("images")!;
    assert.deepEqual(images.shape, [1, 32, 48, 3]);
    assertClose(images.data, fixtureTensor(run, "images"), TOL, "images");
    // At another size the latents no longer fit: both shapes named, nothing written.
    const bad = await runCli("generate", [
      ...args,
      "--height",
      "48",
      "--width",
      "48",
      "--out",
      `${dir}/y.png`,
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /latents hold 96 values; the model takes \[1, 9, 16\] \(144 values\)/);
    const odd = await runCli("generate", [
      ...args,
      "--height",
      "40",
      "--width",
      "48",
      "--out",
      `${dir}/y.png`,
    ]);
    assert.equal(odd.code, 2);
    assert.match(
      odd.stderr,
      /^size: 48x40 is not allowed; allowed: "WxH" with width and height positive multiples of 16/m,
    );
    const text = await runCli("generate", [
      "--model",
      "tests/fixtures/flux/pipeline",
      "--prompt",
      "a cat",
      "--out",
      `${dir}/y.png`,
    ]);
    assert.equal(text.code, 2);
    assert.match(
      text.stderr,
      /^prompt: this model takes precomputed prompt_embeds and pooled_prompt_embeds only/m,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["x.png", "x.safetensors"]);
  }));

Deno.test("forward: a missing input, a wrong shape and an unsupported component are named", () =>
  withTempDir(async (dir) => {
    const input = `${dir}/in.safetensors`;
    await Deno.writeFile(
      input,
      encodeSafetensors({ hidden_states: { shape: [1, 4, 8, 8], data: new Float32Array(256) } }),
    );
    const missing = await runCli("forward", [
      "--model",
      `${FIXTURES}/dit-a/transformer`,
      "--inputs",
      input,
      "--out",
      `${dir}/o.safetensors`,
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^inputs: no tensor "timestep" \[1\]; found hidden_states$/);
    await Deno.writeFile(
      input,
      encodeSafetensors({ z: { shape: [1, 5, 3, 3], data: new Float32Array(45) } }),
    );
    const shape = await runCli("forward", [
      "--model",
      `${FIXTURES}/vae-a`,
      "--inputs",
      input,
      "--out",
      `${dir}/o.safetensors`,
    ]);
    assert.equal(shape.code, 2);
    assert.match(shape.stderr, /^inputs: tensor "z" is \[1, 5, 3, 3\], expected \[B, 4, h, w\]$/);
    const other = await runCli("forward", [
      "--model",
      `${FIXTURES}/dit-pipeline/scheduler`,
      "--inputs",
      input,
      "--out",
      `${dir}/o.safetensors`,
    ]);
    assert.equal(other.code, 2);
    assert.match(other.stderr, /scheduler\/config.json: file not found/);
    assert.ok(!(await Deno.stat(`${dir}/o.safetensors`).catch(() => null)), "nothing written");
  }));
