// deno task compile [--output dist/ditserve] [--target x86_64-unknown-linux-gnu]
// The server as one executable (`deno compile`), with everything it reads at run time embedded: the shaders,
// the embedded models, the playground page and the GPU worker module (a Worker's module is not in the static
// module graph). `deno compile` takes its runtime base (denort) from Deno's download site unless DENORT_BIN
// names a local one; where neither is available the task stops at once, saying so, instead of failing deep
// inside the download.
import { parseArgs } from "node:util";

/** Paths, relative to the repository root, that the server reads at run time; all are embedded. */
export const INCLUDED_PATHS = [
  "shaders",
  "weights",
  "src/server/playground.html",
  "src/server/gpu_worker.ts",
];

/** The permissions of `deno task serve`, granted to the binary. */
export const SERVE_FLAGS = [
  "--unstable-no-legacy-abort",
  "--allow-read",
  "--allow-env",
  "--allow-net",
  "--allow-run=ffmpeg",
];

export const DOWNLOAD_SITE = "https://dl.deno.land/";
const PROBE_TIMEOUT_MS = 5000;

const root = new URL("../../", import.meta.url);

/** null when `site` answers; otherwise why `deno compile` cannot fetch its runtime base from it. */
export async function unreachableReason(site: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<string | null> {
  try {
    const res = await fetch(site, { method: "HEAD", signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return null;
  } catch (e) {
    const cause = (e as Error).message.split("\n")[0];
    return `deno compile downloads its runtime base (denort) from ${site}, which this machine cannot reach ` +
      `(${cause}). No npm package ships it: on a machine that can reach it, download the denort zip of ` +
      `Deno ${Deno.version.deno} for your target, unzip it here and set DENORT_BIN=/path/to/denort`;
  }
}

/**
 * Files of npm packages in the lockfile that `deno compile` 2.9 cannot embed: a 2 MB extensionless list of
 * numbers in bintrees' tests (a dependency of prom-client) overflows its stack (denoland/deno#36746).
 */
async function unembeddableNpmFiles(): Promise<string[]> {
  const lock = JSON.parse(await Deno.readTextFile(new URL("deno.lock", root)));
  const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stderr: "inherit" })
    .output();
  const npmCache = JSON.parse(new TextDecoder().decode(info.stdout)).npmCache as string;
  return Object.keys(lock.npm ?? {})
    .filter((key) => key.startsWith("bintrees@"))
    .map((key) => `${npmCache}/registry.npmjs.org/bintrees/${key.slice("bintrees@".length)}/test`);
}

export async function compileArgs(output: string, target?: string): Promise<string[]> {
  const exclude = (await unembeddableNpmFiles()).flatMap((path) => ["--exclude", path]);
  return [
    "compile",
    ...SERVE_FLAGS,
    "--exclude-unused-npm",
    ...INCLUDED_PATHS.flatMap((path) => ["--include", path]),
    ...exclude,
    ...(target ? ["--target", target] : []),
    "--output",
    output,
    "src/main.ts",
  ];
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: { output: { type: "string", default: "dist/ditserve" }, target: { type: "string" } },
      strict: true,
    }));
  } catch (e) {
    console.error(`${(e as Error).message}\nusage: deno task compile [--output PATH] [--target TRIPLE]`);
    return 2;
  }
  const base = Deno.env.get("DENORT_BIN");
  if (base) {
    try {
      if (!(await Deno.stat(base)).isFile) throw new Error("not a file");
    } catch (e) {
      console.error(`DENORT_BIN=${base}: ${(e as Error).message}; it must name the denort executable`);
      return 2;
    }
  } else {
    const reason = await unreachableReason(DOWNLOAD_SITE);
    if (reason) {
      console.error(reason);
      return 1;
    }
  }
  const args = await compileArgs(values.output!, values.target);
  const { code } = await new Deno.Command(Deno.execPath(), { args, cwd: root.pathname }).spawn().status;
  return code;
}

if (import.meta.main) Deno.exit(await main());
