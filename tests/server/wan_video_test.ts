// The whole video path with nothing faked: a prompt to POST /v1/videos on a tiny WanPipeline directory with
// its UMT5 text encoder runs on the real GPU worker (UMT5, the transformer's two CFG passes per step, UniPC,
// the Wan VAE chunk by chunk), and GET .../content returns an MP4 that ffprobe reads with the asked frame count
// and size. A cached run reports its steps per CFG branch.
import assert from "node:assert/strict";
import { createApp } from "../../src/server/app.ts";
import { DEFAULT_SERVER_OPTIONS } from "../../src/server/options.ts";
import { createServices } from "../../src/server/services.ts";
import { probeVideo } from "../support/video.ts";
import { wanTextPipeline } from "../support/wan_text_pipeline.ts";
import { jsonPost, serverTest } from "./support/http.ts";

const modelsDir = await Deno.makeTempDir({ prefix: "ditserve-wan-video-" });
await wanTextPipeline(modelsDir, "wan-tiny");
const services = await createServices({ ...DEFAULT_SERVER_OPTIONS, modelsDir, defaultModel: "wan-tiny" });
const app = createApp(services.deps);

async function finished(id: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const video = await (await app.request(`/v1/videos/${id}`)).json();
    if (video.status === "completed" || video.status === "failed") return video;
    if (Date.now() > deadline) throw new Error(`video ${id} did not finish: ${JSON.stringify(video)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

serverTest("a prompt to POST /v1/videos on a tiny Wan directory returns a playable MP4", async () => {
  await services.worker.ready();
  const res = await app.request(
    "/v1/videos",
    jsonPost({ prompt: "a red fox running in the snow", size: "48x32", frames: 9, steps: 3, seed: 5 }),
  );
  assert.equal(res.status, 202, await res.clone().text());
  const job = await res.json();
  const video = await finished(job.id);
  assert.equal(video.status, "completed", JSON.stringify(video));
  const content = await app.request(`/v1/videos/${job.id}/content`);
  assert.equal(content.headers.get("content-type"), "video/mp4");
  const probed = await probeVideo(new Uint8Array(await content.arrayBuffer()), ".mp4");
  assert.deepEqual(
    [probed.codec, probed.pixFmt, probed.width, probed.height, probed.frames],
    ["h264", "yuv420p", 48, 32, 9],
  );
});

serverTest("a cached Wan video reports the steps each CFG branch cached", async () => {
  const cache = { strategy: "dbcache", Fn: 1, Bn: 0, residual_diff_threshold: 0.9, max_warmup_steps: 2 };
  const res = await app.request(
    "/v1/videos",
    jsonPost({ prompt: "a red fox running in the snow", size: "48x32", frames: 5, steps: 6, cache }),
  );
  assert.equal(res.status, 202, await res.clone().text());
  const video = await finished((await res.json()).id);
  assert.equal(video.status, "completed", JSON.stringify(video));
  for (const branch of ["cached_steps", "cfg_cached_steps"]) {
    const cached = video[branch] as number[];
    assert.ok(cached.length > 0 && cached.every((s) => s >= 2), `${branch}: ${JSON.stringify(video)}`);
  }
});
