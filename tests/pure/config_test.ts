import assert from "node:assert/strict";
import { readConfig } from "../../src/model/mnist_dit/config.ts";
import { withTempDir } from "../support/temp.ts";

const VALID = {
  _class_name: "MnistDiT",
  sample_size: 28,
  patch_size: 4,
  in_channels: 1,
  out_channels: 1,
  hidden_size: 128,
  depth: 12,
  num_heads: 4,
  mlp_ratio: 4,
  num_classes: 10,
  null_class: 10,
  class_names: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
  norm_eps: 1e-6,
  timestep_scale: 1000,
  prediction: "flow_velocity",
  trained_iterations: 6000,
};

let written = 0;

async function writeConfig(dir: string, value: unknown): Promise<string> {
  const path = `${dir}/${written++}.json`;
  await Deno.writeTextFile(path, typeof value === "string" ? value : JSON.stringify(value));
  return path;
}

Deno.test("config: a valid DiT config parses and keeps provenance fields", () =>
  withTempDir(async (dir) => {
    const config = await readConfig(await writeConfig(dir, VALID));
    assert.equal(config.depth, 12);
    assert.equal(config.trained_iterations, 6000);
  }));

Deno.test("config: unknown architecture, bad JSON, missing file and bad fields are named", () =>
  withTempDir(async (dir) => {
    await assert.rejects(
      readConfig(await writeConfig(dir, { ...VALID, _class_name: "UNet2D" })),
      /unknown architecture _class_name "UNet2D"; supported: MnistDiT/,
    );
    await assert.rejects(readConfig(await writeConfig(dir, "{nope")), /\.json: not valid JSON/);
    await assert.rejects(
      readConfig("/nonexistent/config.json"),
      /\/nonexistent\/config\.json: file not found/,
    );
    await assert.rejects(
      readConfig(await writeConfig(dir, { ...VALID, patch_size: 5 })),
      /patch_size: must divide sample_size/,
    );
    await assert.rejects(readConfig(await writeConfig(dir, { ...VALID, depth: 0 })), /depth: /);
    await assert.rejects(
      readConfig(await writeConfig(dir, { ...VALID, class_names: ["a"] })),
      /class_names: must list num_classes \(10\) names/,
    );
  }));
