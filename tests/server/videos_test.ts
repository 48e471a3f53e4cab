// The video job API through app.request(), with everything real but the GPU work: a real WanPipeline model
// directory (the tiny fixture with a text encoder), the real GPU worker client, queue, job store and routes,
// and a fake worker (support/fake_video.ts) that steps and writes moving frames. Files are read back with
// ffprobe.
import assert from "node:assert/strict";
import { videoFormatSupport } from "../../src/pipeline/video/encode.ts";
import { createApp } from "../../src/server/app.ts";
import { DEFAULT_SERVER_OPTIONS, type ServerOptions } from "../../src/server/options.ts";
import { createServices } from "../../src/server/services.ts";
import { VideoJobs } from "../../src/server/video_jobs.ts";
import { copyTree } from "../support/temp.ts";
import { probeVideo, webpFrames } from "../support/video.ts";
import { FAIL_MESSAGE, FAIL_SEED, FakeVideoWorkers, HOLD_SEED, wanModelsDir } from "./support/fake_video.ts";
import { jsonPost, parseSse, serverTest } from "./support/http.ts";

const modelsDir = await wanModelsDir();
await copyTree("tests/fixtures/flux/pipeline-text", `${modelsDir}/flux-text`);

/** The default 81 frames at 16x16 (and 5 at 64x32) are within this; 13 at 64x32 are not. */
const MAX_VIDEO_PIXELS = 81 * 16 * 16;

async function serve(options: Partial<ServerOptions> = {}) {
  const workers = new FakeVideoWorkers();
  const services = await createServices({
    ...DEFAULT_SERVER_OPTIONS,
    modelsDir,
    defaultModel: "wan-tiny",
    maxVideoPixels: MAX_VIDEO_PIXELS,
    ...options,
  }, workers.spawn);
  await services.worker.ready();
  return { workers, services, app: createApp(services.deps) };
}

const { workers, services, app } = await serve();

const BODY = { prompt: "a red fox running in the snow", size: "64x32", frames: 5, fps: 8, steps: 4 };

const post = (body: unknown, on = app) => on.request("/v1/videos", jsonPost(body));
const status = async (id: string, on = app) => await (await on.request(`/v1/videos/${id}`)).json();

/** Polls the job until `done` holds of it (the fake worker steps every few milliseconds). */
async function until(id: string, done: (video: Record<string, unknown>) => boolean, on = app) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const video = await status(id, on);
    if (done(video)) return video;
    if (Date.now() > deadline) throw new Error(`video ${id} never got there: ${JSON.stringify(video)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const finished = (v: Record<string, unknown>) => v.status === "completed" || v.status === "failed";

/** The events of an SSE response, as they arrive. */
async function* sseEvents(res: Response) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      yield* parseSse(buffer.slice(0, end + 2));
      buffer = buffer.slice(end + 2);
    }
  }
}

serverTest(
  "POST answers 202 with the job at once; an event per step; content is the MP4 asked for",
  async () => {
    const res = await post({ ...BODY, seed: HOLD_SEED });
    assert.equal(res.status, 202);
    const created = await res.json();
    assert.match(created.id, /^video_[0-9a-f]{32}$/);
    assert.equal(res.headers.get("location"), `/v1/videos/${created.id}`);
    // Nothing else is queued, so the job has started (a queue behind another job would answer "queued").
    assert.deepEqual(
      { ...created, id: undefined, created_at: undefined },
      {
        id: undefined,
        object: "video",
        model: "wan-tiny",
        status: "in_progress",
        progress: 0,
        step: 0,
        steps: 4,
        created_at: undefined,
        completed_at: null,
        expires_at: null,
        prompt: BODY.prompt,
        size: "64x32",
        frames: 5,
        fps: 8,
        seconds: "0.625",
        seed: HOLD_SEED,
        response_format: "mp4",
        generate_seconds: null,
        cached_steps: null,
        cfg_cached_steps: null,
        error: null,
      },
    );
    assert.ok(Math.abs(created.created_at - Date.now() / 1000) < 60);

    const seen: [string, number, number][] = [];
    let advanced = false;
    for await (const { event, data } of sseEvents(await app.request(`/v1/videos/${created.id}/events`))) {
      const video = data as { step: number; progress: number };
      seen.push([event, video.step, video.progress]);
      if (!advanced) workers.advance(4);
      advanced = true;
    }
    assert.deepEqual(seen, [
      ["video.in_progress", 0, 0],
      ["video.in_progress", 1, 25],
      ["video.in_progress", 2, 50],
      ["video.in_progress", 3, 75],
      ["video.in_progress", 4, 99],
      ["video.completed", 4, 100],
    ]);

    const done = await status(created.id);
    assert.equal(done.status, "completed");
    assert.equal(done.expires_at - done.completed_at, DEFAULT_SERVER_OPTIONS.videoRetentionS);
    assert.ok(done.generate_seconds > 0);
    assert.deepEqual(done.cached_steps, []);
    const content = await app.request(`/v1/videos/${created.id}/content`);
    assert.equal(content.status, 200);
    assert.equal(content.headers.get("content-type"), "video/mp4");
    const probed = await probeVideo(new Uint8Array(await content.arrayBuffer()), ".mp4");
    assert.deepEqual(
      [probed.codec, probed.pixFmt, probed.width, probed.height, probed.frames, probed.frameRate],
      ["h264", "yuv420p", 64, 32, 5, "8/1"],
    );
  },
);

serverTest(
  "gif and webp come with their content types; the model's defaults fill frames and fps",
  async () => {
    const gif =
      await (await post({ ...BODY, frames: 9, size: "32x32", fps: undefined, response_format: "gif" }))
        .json();
    const webp = await (await post({ ...BODY, response_format: "webp" })).json();
    for (const id of [gif.id, webp.id]) await until(id, finished);
    const gifFile = await app.request(`/v1/videos/${gif.id}/content`);
    assert.equal(gifFile.headers.get("content-type"), "image/gif");
    const probed = await probeVideo(new Uint8Array(await gifFile.arrayBuffer()), ".gif");
    assert.deepEqual([probed.codec, probed.width, probed.height, probed.frames], ["gif", 32, 32, 9]);
    assert.equal((await status(gif.id)).fps, 16, "the card's fps");
    const webpFile = await app.request(`/v1/videos/${webp.id}/content`);
    assert.equal(webpFile.headers.get("content-type"), "image/webp");
    assert.deepEqual(webpFrames(new Uint8Array(await webpFile.arrayBuffer())).durations, [
      125,
      125,
      125,
      125,
      125,
    ]);
    const defaults = await (await post({ prompt: "a fox", size: "16x16", response_format: "gif" })).json();
    assert.deepEqual([defaults.frames, defaults.fps, defaults.steps, defaults.size], [81, 16, 50, "16x16"]);
    await app.request(`/v1/videos/${defaults.id}`, { method: "DELETE" });
  },
);

const BAD: [Record<string, unknown>, string, RegExp][] = [
  [
    { frames: 8 },
    "frames",
    /^frames: 8 is not 4k\+1; WanPipeline takes 4k\+1 frames \(1, 5, 9, \.\.\., 81\)/,
  ],
  [{ frames: 0 }, "frames", /frames must be in 1\.\.1001/],
  [
    { frames: 13 },
    "frames",
    /^frames: 13 frames of 64x32 are 26624 pixels; the limit is 20736 \(frames x width x/,
  ],
  [{ fps: 0 }, "fps", /fps must be in 1\.\.120/],
  [{ fps: 2.5 }, "fps", /fps must be an integer in 1\.\.120/],
  [{ size: "40x32" }, "size", /^size: 40x32 is not allowed; allowed: .*multiples of 16/],
  [{ response_format: "avi" }, "response_format", /response_format must be one of mp4, gif, webp/],
  [{ prompt: undefined }, "prompt", /prompt must be a string/],
  [{ prompt: " " }, "prompt", /prompt: is empty/],
  [{ steps: 0 }, "steps", /steps must be in 1\.\.1000/],
  [
    { guidance: 1, negative_prompt: "blurry" },
    "negative_prompt",
    /applies only with classifier-free guidance/,
  ],
  [{ true_cfg: 4 }, "true_cfg", /Unrecognized key: "true_cfg"/],
  [{ n: 2 }, "n", /Unrecognized key: "n"/],
  [{ cache: "warp" }, "cache", /^cache: cache must be one of none, /],
  [
    { model: "flux-text" },
    "model",
    /^model: flux-text draws images, not videos: send it to POST \/v1\/images/,
  ],
];

serverTest("bad input is a 400 naming the field and the rule, before anything is queued", async () => {
  for (const [change, field, message] of BAD) {
    const res = await post({ ...BODY, ...change });
    const body = await res.json();
    assert.equal(res.status, 400, JSON.stringify({ change, body }));
    assert.equal(body.field, field, JSON.stringify({ change, body }));
    assert.match(body.error, message);
  }
  const unknown = await post({ ...BODY, model: "no-such-model" });
  assert.equal(unknown.status, 404);
  // Image routes send a video model to /v1/videos; image models refuse frames by name.
  const image = await app.request("/v1/images/generations", jsonPost({ prompt: "a fox", model: "wan-tiny" }));
  assert.deepEqual(await image.json(), {
    error: "model: wan-tiny draws videos: send it to POST /v1/videos",
    field: "model",
  });
  const frames = await app.request(
    "/v1/generate",
    jsonPost({ prompt: "a fox", model: "flux-text", frames: 5 }),
  );
  assert.equal(frames.status, 400);
  assert.match(
    (await frames.json()).error,
    /^frames: FluxPipeline draws images, not videos: it takes no frames$/,
  );
});

serverTest(
  "a running job's content is 409 with its progress; one behind it is queued; unknown ids are 404",
  async () => {
    const held = await (await post({ ...BODY, seed: HOLD_SEED })).json();
    const behind = await (await post(BODY)).json();
    workers.advance(1);
    const running = await until(held.id, (v) => v.step === 1);
    assert.deepEqual([running.status, running.progress], ["in_progress", 25]);
    const early = await app.request(`/v1/videos/${held.id}/content`);
    assert.equal(early.status, 409);
    assert.deepEqual(await early.json(), {
      error: `video ${held.id} has no content yet: it is in_progress, step 1 of 4 (25%)`,
      status: "in_progress",
      progress: 25,
    });
    const queued = await app.request(`/v1/videos/${behind.id}/content`);
    assert.equal(queued.status, 409);
    assert.equal((await queued.json()).status, "queued");
    workers.advance(3);
    assert.equal((await until(held.id, finished)).status, "completed");
    assert.equal((await until(behind.id, finished)).status, "completed");
    for (const path of ["", "/content", "/events"]) {
      const res = await app.request(`/v1/videos/video_none${path}`);
      assert.equal(res.status, 404, path);
      assert.equal((await res.json()).field, "id");
    }
    assert.equal((await app.request("/v1/videos/video_none", { method: "DELETE" })).status, 404);
  },
);

serverTest(
  "a failed job reports its error; its events end with video.failed and its content is 409",
  async () => {
    const failing = await (await post({ ...BODY, seed: FAIL_SEED })).json();
    const events = parseSse(await (await app.request(`/v1/videos/${failing.id}/events`)).text());
    assert.equal(events.at(-1)?.event, "video.failed");
    const failed = await status(failing.id);
    assert.equal(failed.status, "failed");
    assert.equal(failed.error.code, "internal");
    assert.match(failed.error.message, new RegExp(`generation failed: ${FAIL_MESSAGE}`));
    const content = await app.request(`/v1/videos/${failing.id}/content`);
    assert.equal(content.status, 409);
    assert.match((await content.json()).error, /it is failed: generation failed: simulated failure/);
  },
);

serverTest(
  "the job survives its client: an events stream closed mid-run leaves it running to completion",
  async () => {
    const held = await (await post({ ...BODY, seed: HOLD_SEED })).json();
    const res = await app.request(`/v1/videos/${held.id}/events`);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    workers.advance(4);
    assert.equal((await until(held.id, finished)).status, "completed");
  },
);

serverTest("DELETE cancels a running job, frees its slot, and the queue goes on", async () => {
  const held = await (await post({ ...BODY, seed: HOLD_SEED })).json();
  const next = await (await post(BODY)).json();
  workers.advance(1);
  await until(held.id, (v) => v.step === 1);
  const watching = (async () => await (await app.request(`/v1/videos/${held.id}/events`)).text())();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const deleted = await app.request(`/v1/videos/${held.id}`, { method: "DELETE" });
  assert.deepEqual(await deleted.json(), { id: held.id, object: "video.deleted", deleted: true });
  assert.equal((await app.request(`/v1/videos/${held.id}`)).status, 404);
  const last = parseSse(await watching).at(-1)!;
  assert.equal(last.event, "video.failed");
  assert.match((last.data as { error: { message: string } }).error.message, /was deleted before it finished/);
  assert.equal((await until(next.id, finished)).status, "completed");
});

serverTest(
  "a full job store is 429 (Retry-After: the next expiry); DELETE and expiry make room; timeouts fail",
  async () => {
    const { app: small, services: s } = await serve({
      maxVideoJobs: 2,
      videoRetentionS: 1,
      videoTimeoutS: 1,
    });
    try {
      const a = await (await post({ ...BODY, response_format: "gif" }, small)).json();
      const b = await (await post({ ...BODY, seed: HOLD_SEED }, small)).json();
      assert.equal((await until(a.id, finished, small)).status, "completed");
      const kept = s.deps.videos.get(a.id);
      assert.ok(kept.bytes !== null);
      const full = await post(BODY, small);
      assert.equal(full.status, 429);
      assert.match(
        (await full.json()).error,
        /^too many videos: 2 are queued, running or kept \(MAX_VIDEO_JOBS 2;/,
      );
      assert.equal(full.headers.get("retry-after"), "1");
      // The held job never gets a step: VIDEO_TIMEOUT_S fails it.
      const timedOut = await until(b.id, finished, small);
      assert.deepEqual([timedOut.status, timedOut.error.code], ["failed", "timeout"]);
      assert.match(timedOut.error.message, /timed out after 1 s \(VIDEO_TIMEOUT_S\)/);
      // Deleting the failed job makes room at once.
      assert.equal((await small.request(`/v1/videos/${b.id}`, { method: "DELETE" })).status, 200);
      const c = await (await post({ ...BODY, response_format: "gif" }, small)).json();
      assert.equal((await until(c.id, finished, small)).status, "completed");
      // Retention: a finished job and its file go after VIDEO_RETENTION_S.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal((await small.request(`/v1/videos/${a.id}`)).status, 404);
      assert.equal(kept.bytes, null, "the expired job's file is freed");
      assert.equal((await post(BODY, small)).status, 202);
    } finally {
      s.close();
    }
  },
);

serverTest(
  "without ffmpeg, mp4 and webp are refused naming ffmpeg and its install; gif still works",
  async () => {
    const videos = new VideoJobs(services.deps.generator, {
      ...services.deps.videos.settings,
      formats: await videoFormatSupport("ditserve-no-such-ffmpeg"),
    });
    const bare = createApp({ ...services.deps, videos });
    const mp4 = await post(BODY, bare);
    assert.equal(mp4.status, 400);
    const refusal = await mp4.json();
    assert.equal(refusal.field, "response_format");
    assert.match(
      refusal.error,
      /^response_format: mp4 needs ffmpeg: ffmpeg is not installed .*apt-get install -y ffmpeg/,
    );
    assert.match(refusal.error, /gif works without it$/);
    assert.equal((await post({ ...BODY, response_format: "webp" }, bare)).status, 400);
    const gif = await (await post({ ...BODY, response_format: "gif" }, bare)).json();
    assert.equal((await until(gif.id, finished, bare)).status, "completed");
    const models = (await (await bare.request("/v1/models")).json()).data;
    assert.deepEqual(models.find((m: { id: string }) => m.id === "wan-tiny").video.formats, ["gif"]);
    videos.close();
  },
);

serverTest("/v1/models describes the video model; the OpenAPI document has the video routes", async () => {
  const models = (await (await app.request("/v1/models")).json()).data;
  const wan = models.find((m: { id: string }) => m.id === "wan-tiny");
  assert.equal(wan.pipeline, "WanPipeline");
  assert.deepEqual(wan.video, { frames: 81, fps: 16, frames_per_latent: 4, formats: ["mp4", "gif", "webp"] });
  assert.deepEqual([wan.limits.frames, wan.limits.fps], [{ min: 1, max: 1001 }, { min: 1, max: 120 }]);
  const flux = models.find((m: { id: string }) => m.id === "flux-text");
  assert.equal(flux.video, null);
  assert.equal(flux.limits.frames, undefined);
  const doc = await (await app.request("/openapi.json")).json();
  assert.deepEqual(
    Object.keys(doc.paths).filter((p) => p.startsWith("/v1/videos")),
    ["/v1/videos", "/v1/videos/{id}", "/v1/videos/{id}/content", "/v1/videos/{id}/events"],
  );
  assert.deepEqual(Object.keys(doc.paths["/v1/videos/{id}"]), ["get", "delete"]);
  assert.ok(doc.paths["/v1/videos/{id}/content"].get.responses["200"].content["video/mp4"]);
});

serverTest("shut down: the services close", () => {
  services.close();
  return Deno.remove(modelsDir, { recursive: true });
});
