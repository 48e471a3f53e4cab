// The playground driven in Debian's headless Chromium against a real server on 127.0.0.1: Generate must
// stream both runs and show both images and their PSNR, for a class of the embedded DiT and for a prompt at a
// size of the tiny text FLUX directory, and an API error must show in the page.
import assert from "node:assert/strict";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { BUNDLED_MODELS_DIR } from "../../src/server/options.ts";
import { startServer } from "../../src/server/start.ts";
import { copyTree } from "../support/temp.ts";

const CHROMIUM = "/usr/bin/chromium";
const RESULT_TIMEOUT_MS = 240_000;

async function requireChromium(): Promise<string> {
  try {
    await Deno.stat(CHROMIUM);
    return CHROMIUM;
  } catch {
    throw new Error(
      `${CHROMIUM} is missing: the playground browser test needs Debian's Chromium. ` +
        "Install it with `apt-get install -y chromium` (.ci/run does this).",
    );
  }
}

async function launch(executablePath: string): Promise<Browser> {
  return await puppeteer.launch({
    executablePath,
    headless: true,
    // As root Chromium needs --no-sandbox; the rest keeps it from reaching for Google's hosts, which this
    // closed network refuses (and which would log errors unrelated to the page).
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Types into inputs and picks select options the way a user does. */
async function fill(page: Page, fields: Record<string, string>): Promise<void> {
  for (const [id, value] of Object.entries(fields)) await page.locator(`#${id}`).fill(value);
}

// Evaluated in the page, where the DOM lives (this file is type-checked without the DOM library).
const RESULT_OR_ERROR_SHOWN =
  `document.getElementById("psnr").textContent !== "-" || document.getElementById("error").textContent !== ""`;

async function clickGenerateAndWait(page: Page): Promise<void> {
  await page.click("#generate");
  await page.waitForFunction(RESULT_OR_ERROR_SHOWN, { timeout: RESULT_TIMEOUT_MS, polling: 250 });
}

const text = (page: Page, selector: string) => page.$eval(selector, (el) => el.textContent ?? "");

const naturalSize = (page: Page, id: string) =>
  page.$eval(`#${id}`, (img) => {
    const { naturalWidth, naturalHeight } = img as unknown as { naturalWidth: number; naturalHeight: number };
    return [naturalWidth, naturalHeight];
  });

const hidden = (page: Page, id: string) =>
  page.$eval(`#${id}`, (el) => (el as unknown as { hidden: boolean }).hidden);

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
      const consoleErrors: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") consoleErrors.push(message.text());
      });
      page.on("pageerror", (error) => consoleErrors.push(String(error)));
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
        assert.deepEqual(consoleErrors, []);
      });

      await t.step("an out-of-range field shows the API's error naming it", async () => {
        await fill(page, { steps: "5000" });
        await clickGenerateAndWait(page);
        assert.match(await text(page, "#error"), /^400: .*steps/);
        assert.equal(await text(page, "#psnr"), "-");
      });

      await t.step("a text model takes a prompt and a size instead of a class", async () => {
        consoleErrors.length = 0; // the 400 above is logged as a failed load
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
        assert.deepEqual(consoleErrors, []);

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
