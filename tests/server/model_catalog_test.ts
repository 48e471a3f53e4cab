// Model names cannot reach outside MODELS_DIR: not-plain names are 400, anything else that is not a DiT
// directory inside it (including a symlink out of it) is 404 naming the model.
import assert from "node:assert/strict";
import { ApiError } from "../../src/server/api_error.ts";
import { ModelCatalog } from "../../src/server/model_catalog.ts";
import { withTempDir } from "../support/temp.ts";

/** `ln -s`: Deno.symlink needs unscoped --allow-write, which the test task does not grant. */
async function symlink(target: string, path: string): Promise<void> {
  const { success } = await new Deno.Command("ln", { args: ["-s", target, path] }).output();
  assert.ok(success, `ln -s ${target} ${path}`);
}

async function rejects(catalog: ModelCatalog, name: string, status: number): Promise<void> {
  await assert.rejects(catalog.get(name), (e: unknown) => {
    assert.ok(e instanceof ApiError, `${name}: ${e}`);
    assert.equal(e.status, status, `${name}: ${e.message}`);
    assert.equal(e.field, "model");
    return true;
  });
}

Deno.test("the shipped models dir lists mnist-dit and mnist-flux (the classifier is not a DiT) and finds it by name", async () => {
  const catalog = new ModelCatalog("weights");
  assert.deepEqual((await catalog.list()).map((m) => m.id), ["mnist-dit", "mnist-flux"]);
  const model = await catalog.get("mnist-dit");
  assert.equal(model.card.blocks, 12);
  assert.ok(model.dir.endsWith("/weights/mnist-dit"));
});

Deno.test("names that are not plain are 400; unknown, parent, non-DiT and escaping names are 404", async () => {
  await withTempDir(async (root) => {
    const models = `${root}/models`;
    await Deno.mkdir(`${models}/empty`, { recursive: true });
    await Deno.mkdir(`${root}/outside`);
    await Deno.copyFile("weights/mnist-dit/config.json", `${root}/outside/config.json`);
    await symlink(`${root}/outside`, `${models}/escape`);
    await symlink("../../weights/mnist-classifier", `${models}/classifier`);
    const catalog = new ModelCatalog(models);
    for (const name of ["../outside", "/etc", "Mnist", "a/b", "", "x\u0000"]) {
      await rejects(catalog, name, 400);
    }
    for (const name of ["..", ".", "missing", "empty", "escape", "classifier"]) {
      await rejects(catalog, name, 404);
    }
    assert.deepEqual(await catalog.list(), []);
  });
});
