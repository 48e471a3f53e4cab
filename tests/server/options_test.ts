// Server settings: defaults with no configuration, environment, flags over environment, bad values named.
import assert from "node:assert/strict";
import { BUNDLED_MODELS_DIR, parseServerOptions, ServerOptionsError } from "../../src/server/options.ts";

Deno.test("no configuration gives the documented defaults", () => {
  assert.deepEqual(parseServerOptions({}, []), {
    port: 8000,
    host: "127.0.0.1",
    modelsDir: BUNDLED_MODELS_DIR,
    defaultModel: "mnist-flux",
    apiKey: undefined,
    maxQueue: 16,
    requestTimeoutS: 300,
    corsOrigin: undefined,
    maxVideoJobs: 64,
    videoRetentionS: 3600,
    videoTimeoutS: 10_800,
    maxVideoPixels: 81 * 1280 * 720,
  });
});

Deno.test("the default models dir is the repository's weights/ as an absolute path, found from the code", () => {
  assert.equal(BUNDLED_MODELS_DIR, `${Deno.cwd()}/weights`);
});

Deno.test("environment sets values; flags win over the environment", () => {
  const o = parseServerOptions(
    { PORT: "9000", HOST: "0.0.0.0", API_KEY: "secret", MAX_QUEUE: "3", CORS_ORIGIN: "https://a.example" },
    [
      "--port",
      "9100",
      "--models-dir",
      "/srv/models",
      "--request-timeout-s",
      "20",
      "--video-retention-s",
      "60",
    ],
  );
  assert.equal(o.port, 9100);
  assert.equal(o.host, "0.0.0.0");
  assert.equal(o.modelsDir, "/srv/models");
  assert.equal(o.apiKey, "secret");
  assert.equal(o.maxQueue, 3);
  assert.equal(o.requestTimeoutS, 20);
  assert.equal(o.corsOrigin, "https://a.example");
  assert.equal(o.videoRetentionS, 60);
});

Deno.test("bad values stop start-up with a message naming the setting and its range", () => {
  const cases: [Record<string, string>, string[], RegExp][] = [
    [{ PORT: "70000" }, [], /PORT must be an integer in 0\.\.65535/],
    [{ PORT: "eighty" }, [], /PORT must be an integer/],
    [{}, ["--max-queue=-1"], /MAX_QUEUE must be an integer in 0\.\.10000/],
    [{ REQUEST_TIMEOUT_S: "0" }, [], /REQUEST_TIMEOUT_S must be an integer in 1\.\.86400/],
    [{}, ["--video-retention-s", "0"], /VIDEO_RETENTION_S must be an integer in 1\.\.604800/],
    [{ MAX_VIDEO_JOBS: "0" }, [], /MAX_VIDEO_JOBS must be an integer in 1\.\.10000/],
    [{ MAX_VIDEO_PIXELS: "1.5" }, [], /MAX_VIDEO_PIXELS must be an integer in 1\.\.1000000000000/],
    [{}, ["--no-such-flag", "1"], /no-such-flag[\s\S]*usage: deno task serve/],
  ];
  for (const [env, args, message] of cases) {
    assert.throws(() => parseServerOptions(env, args), (e: unknown) => {
      assert.ok(e instanceof ServerOptionsError);
      assert.match(e.message, message);
      return true;
    });
  }
});
