// The playground driven in Debian's headless Chromium against a real server on 127.0.0.1: Generate must
// stream both runs and show both images and their PSNR, for a class of the embedded DiT and for a prompt at a
// size of the tiny text FLUX directory, and an API error must show in the page.
import assert from "node:assert/strict";
import { BUNDLED_MODELS_DIR } from "../../src/server/options.ts";
import { startServer } from "../../src/server/start.ts";
import { copyTree } from "../support/temp.ts";
import {
  clickGenerateAndWait,
  consoleErrors,
  fill,
  hidden,
  launch,
  naturalSize,
  requireChromium,
  text,
} from "./support/browser.ts";

Deno.test({
  name: "playground: Generate streams both runs and shows both images with their PSNR; API errors show",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const executablePath = await requireChromium();
    const modelsDir = await Deno.makeTempDir({ prefix: "ditserve-playground-" });
    await copyTree(`${BUNDLED_MODELS_DIR}/mnist-dit`, `${modelsDir}/mnist-dit`);
    await copyTree("tests/fixtures/flux/pipeline-text", `${modelsDir}/flux-text`);
    const server = await startServer({ host: "127.0.0.1", port: 0, modelsDir, defaultModel: "mnist-dit" });
    const browser = await launch(executablePath);
    try {
      const page = await browser.newPage();
      const errors = consoleErrors(page);
      await page.goto(new URL("/", server.url).href, { waitUntil: "load" });

      await t.step("uncached and cached images, PSNR and no console errors", async () => {
        await fill(page, { label: "3", steps: "6", strategy: "fbcache", threshold: "0.3", warmup: "1" });
        await clickGenerateAndWait(page);
        assert.equal(await text(page, "#error"), "");
        for (const id of ["image-uncached", "image-cached"]) {
          assert.deepEqual(await naturalSize(page, id), [28, 28], `#${id} shows no decoded image`);
        }
        assert.equal(await hidden(page, "prompt-field"), true, "a class model takes no prompt");
        assert.match(await text(page, "#psnr"), /^(\d+\.\d+ dB|∞ dB \(identical\))$/);
        const unmarked = await page.$$eval(".progress span:not([class])", (cells) => cells.length);
        assert.equal(unmarked, 0, "a step of either run got no progress event");
        assert.deepEqual(errors, []);
      });

      await t.step("an out-of-range field shows the API's error naming it", async () => {
        await fill(page, { steps: "5000" });
        await clickGenerateAndWait(page);
        assert.match(await text(page, "#error"), /^400: .*steps/);
        assert.equal(await text(page, "#psnr"), "-");
      });

      await t.step("a text model takes a prompt and a size instead of a class", async () => {
        errors.length = 0; // the 400 above is logged as a failed load
        await page.select("#model", "flux-text");
        assert.deepEqual(
          await Promise.all(["label-field", "prompt-field", "size-field"].map((id) => hidden(page, id))),
          [true, false, false],
        );
        await fill(page, { prompt: "a red fox", size: "48x32", steps: "3", strategy: "none" });
        await clickGenerateAndWait(page);
        assert.equal(await text(page, "#error"), "");
        for (const id of ["image-uncached", "image-cached"]) {
          assert.deepEqual(await naturalSize(page, id), [48, 32], `#${id}`);
        }
        assert.match(await text(page, "#psnr"), /identical/);
        assert.deepEqual(errors, []);

        await fill(page, { size: "40x32" });
        await clickGenerateAndWait(page);
        assert.match(
          await text(page, "#error"),
          /^400: size: 40x32 is not allowed.*multiples of 16.*\(field: size\)/,
        );
      });
    } finally {
      await browser.close();
      await server.shutdown();
      await Deno.remove(modelsDir, { recursive: true });
    }
  },
});
