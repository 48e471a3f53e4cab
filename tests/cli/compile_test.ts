// deno task compile: the single binary embeds every path the server reads at run time, DENORT_BIN is honoured
// (so the binary builds offline), and an unreachable download site stops the task at once with the reason.
// The binary itself cannot run here (its runtime base is a download away), so the server is run from source
// with read access to the embedded paths only: a read anywhere else is refused and fails the test.
import assert from "node:assert/strict";
import { INCLUDED_PATHS, unreachableReason } from "../../src/cli/compile.ts";
import { withTempDir } from "../support/temp.ts";

async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  let read = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    read += chunk;
    if (read.includes("\n")) break;
  }
  return read.split("\n")[0];
}

/** Local modules of a module graph, which `deno compile` embeds as code. */
async function localModules(entry: string): Promise<string[]> {
  const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json", entry] }).output();
  const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as { modules: { specifier: string }[] };
  return graph.modules.map((m) => m.specifier).filter((s) => s.startsWith("file:")).map((s) =>
    new URL(s).pathname
  );
}

Deno.test("the server reads nothing at run time outside the paths the binary embeds", () =>
  withTempDir(async (elsewhere) => {
    // A Worker loads its modules at run time, which takes read access; the binary serves them from its code.
    const root = Deno.cwd();
    const readable = [
      ...INCLUDED_PATHS.map((p) => `${root}/${p}`),
      ...await localModules("src/server/gpu_worker.ts"),
    ];
    // Started from another directory, as a binary is: a path read relative to the working directory fails.
    const child = new Deno.Command(Deno.execPath(), {
      cwd: elsewhere,
      args: [
        "run",
        "--quiet",
        "--unstable-no-legacy-abort",
        `--allow-read=${readable.join(",")}`,
        "--allow-env",
        "--allow-net",
        `${root}/src/main.ts`,
        "--port",
        "0",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const line = await firstLine(child.stdout);
    const url = /listening on (http:\/\/\S+)/.exec(line)?.[1];
    try {
      if (!url) assert.fail(`no start-up line: ${line}\n${await stderr}`);
      const page = await fetch(`${url}/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<html/i);
      const image = await fetch(`${url}/v1/generate`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "image/png" },
        // The default mnist-flux: its tokenizers, text encoders and VAE are read through the embedded paths.
        body: JSON.stringify({ prompt: "a handwritten three", steps: 2 }),
      });
      assert.equal(image.status, 200, await image.clone().text());
      assert.equal(image.headers.get("content-type"), "image/png");
      await image.body?.cancel();
    } finally {
      if (url) child.kill("SIGTERM");
    }
    assert.equal((await child.status).code, 0);
    assert.doesNotMatch(await stderr, /Requires read access|NotCapable|PermissionDenied/);
  }));

function compile(env: Record<string, string>, output: string) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-read",
      "--allow-env",
      "--allow-run",
      "--allow-net=dl.deno.land",
      "src/cli/compile.ts",
      "--output",
      output,
    ],
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("deno task compile honours DENORT_BIN: the binary builds offline and embeds every run-time path", () =>
  withTempDir(async (dir) => {
    // Any executable stands in for the runtime base: compile appends the program to it without running it.
    const base = `${dir}/denort`;
    await Deno.copyFile("/bin/true", base);
    const out = await compile({ DENORT_BIN: base }, `${dir}/ditserve`);
    const log = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, log);
    assert.ok((await Deno.stat(`${dir}/ditserve`)).size > (await Deno.stat(base)).size);
    const embedded = log.slice(log.indexOf("Embedded Files"));
    for (const name of ["shaders/*", "weights/*", "playground.html", "gpu_worker.ts", "main.ts"]) {
      assert.ok(embedded.includes(name), `${name} is not embedded:\n${embedded}`);
    }
  }));

Deno.test("deno task compile: a DENORT_BIN that is not a file is named", () =>
  withTempDir(async (dir) => {
    const out = await compile({ DENORT_BIN: `${dir}/missing` }, `${dir}/ditserve`);
    assert.equal(out.code, 2);
    assert.match(new TextDecoder().decode(out.stderr), /^DENORT_BIN=.*\/missing: .*it must name the denort/);
  }));

Deno.test("an unreachable download site is reported with the reason and the DENORT_BIN fix", async () => {
  // Port 9 on loopback refuses at once, as a closed network does for dl.deno.land.
  const reason = await unreachableReason("http://127.0.0.1:9/");
  assert.match(
    reason ?? "",
    /^deno compile downloads its runtime base \(denort\) from http:\/\/127\.0\.0\.1:9\//,
  );
  assert.match(reason ?? "", /set DENORT_BIN=\/path\/to\/denort$/);
});
