// deno task serve as a process: one start-up line naming the adapter, bad settings exit 2, a missing model
// or GPU adapter exits 1, and SIGTERM shuts down cleanly with exit code 0.
import assert from "node:assert/strict";

const PERMISSIONS = ["--allow-read", "--allow-env", "--allow-net"];

function serve(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--unstable-no-legacy-abort", ...PERMISSIONS, "src/main.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    if (text.includes("\n")) break;
  }
  return text.split("\n")[0];
}

Deno.test("start-up line with the adapter and settings; SIGTERM exits 0", async () => {
  const child = serve(["--port", "0", "--max-queue", "3"]);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const line = await firstLine(child.stdout);
  const match =
    /^ditserve listening on (http:\/\/127\.0\.0\.1:\d+) \(adapter: (.+?), model: mnist-flux, .*max queue: 3,/
      .exec(line);
  assert.ok(match, line);
  assert.ok(match[2].length > 0);
  assert.deepEqual(await (await fetch(`${match[1]}/health`)).json(), { status: "ok" });
  child.kill("SIGTERM");
  const status = await child.status;
  await stderr.cancel();
  assert.equal(status.code, 0);
});

Deno.test("bad settings exit 2 naming the setting; a default model that is not there exits 1", async () => {
  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...PERMISSIONS, "src/main.ts", "--port", "99999"],
  }).output();
  assert.equal(bad.code, 2);
  assert.match(new TextDecoder().decode(bad.stderr), /PORT must be an integer in 0\.\.65535/);
  const missing = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...PERMISSIONS, "src/main.ts", "--port", "0", "--model", "no-such-model"],
  }).output();
  assert.equal(missing.code, 1);
  assert.match(
    new TextDecoder().decode(missing.stderr),
    /model "no-such-model" not found; available: mnist-dit, mnist-flux/,
  );
});

Deno.test("no GPU adapter: the server exits 1 with the one-line fix, no stack trace", async () => {
  // Metal does not exist on Linux, so this backend list leaves WebGPU with no adapter at all.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...PERMISSIONS, "src/main.ts", "--port", "0"],
    env: { DENO_WEBGPU_BACKEND: "metal" },
  }).output();
  assert.equal(out.code, 1);
  assert.match(
    new TextDecoder().decode(out.stderr).trim(),
    /^no WebGPU adapter: install Mesa .*or a GPU driver$/,
  );
});
