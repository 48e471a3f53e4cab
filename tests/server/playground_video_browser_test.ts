// The playground with a video model, in Debian's headless Chromium against a real server whose GPU worker is
// the fake video worker (support/fake_video.ts): Generate must queue both runs on /v1/videos, follow their
// progress, and play the MP4s in <video> elements (or show a GIF), and the API's refusal of a frame count
// must show in the page.
import assert from "node:assert/strict";
import type { Page } from "puppeteer-core";
import { startServer } from "../../src/server/start.ts";
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
import { FakeVideoWorkers, wanModelsDir } from "./support/fake_video.ts";

/** What a <video> has loaded: its frame size, duration and whether it can play on. */
const loadedVideo = (page: Page, id: string) =>
  page.$eval(`#${id}`, (el) => {
    const video = el as unknown as {
      videoWidth: number;
      videoHeight: number;
      duration: number;
      readyState: number;
      hidden: boolean;
    };
    return [video.videoWidth, video.videoHeight, video.duration, video.readyState >= 2, video.hidden];
  });

Deno.test({
  name: "playground: a video model's runs are queued as jobs, followed, and played; its errors show",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const executablePath = await requireChromium();
    const modelsDir = await wanModelsDir();
    const workers = new FakeVideoWorkers();
    const server = await startServer({
      host: "127.0.0.1",
      port: 0,
      modelsDir,
      defaultModel: "wan-tiny",
      spawnWorker: workers.spawn,
    });
    const browser = await launch(executablePath);
    try {
      const page = await browser.newPage();
      const errors = consoleErrors(page);
      await page.goto(new URL("/", server.url).href, { waitUntil: "load" });
      await page.waitForFunction(`!document.getElementById("frames-field").hidden`, { timeout: 30_000 });

      await t.step("both MP4s play in <video> at the size, frame count and rate asked", async () => {
        assert.deepEqual(
          await Promise.all(
            ["label-field", "prompt-field", "size-field", "format-field"].map((id) => hidden(page, id)),
          ),
          [true, false, false, false],
        );
        assert.equal(await page.$eval("#frames", (el) => (el as unknown as { value: string }).value), "81");
        await fill(page, {
          prompt: "a red fox",
          size: "64x32",
          frames: "5",
          fps: "8",
          steps: "3",
          strategy: "none",
        });
        await clickGenerateAndWait(page);
        assert.equal(await text(page, "#error"), "");
        for (const id of ["video-uncached", "video-cached"]) {
          assert.deepEqual(await loadedVideo(page, id), [64, 32, 5 / 8, true, false], `#${id}`);
          assert.equal(await hidden(page, id.replace("video", "image")), true);
        }
        // The fake worker draws the same frames each time: the first frames are equal.
        assert.match(await text(page, "#psnr"), /identical/);
        const unmarked = await page.$$eval(".progress span:not([class])", (cells) => cells.length);
        assert.equal(unmarked, 0, "a step of either run was not marked done");
        assert.deepEqual(errors, []);
      });

      await t.step("a GIF shows in the <img>", async () => {
        await page.select("#format", "gif");
        await clickGenerateAndWait(page);
        assert.equal(await text(page, "#error"), "");
        assert.deepEqual(await naturalSize(page, "image-cached"), [64, 32]);
        assert.equal(await hidden(page, "video-cached"), true);
      });

      await t.step("a frame count off the 4k+1 rule shows the API's error naming frames", async () => {
        await fill(page, { frames: "8" });
        await clickGenerateAndWait(page);
        assert.match(await text(page, "#error"), /^400: frames: 8 is not 4k\+1; .*\(field: frames\)$/);
      });
    } finally {
      await browser.close();
      await server.shutdown();
      await Deno.remove(modelsDir, { recursive: true });
    }
  },
});
