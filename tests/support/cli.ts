// Runs a command-line entry point of src/cli/ as its deno task does (its permissions), for CLI tests.

export interface CliResult {
  code: number;
  stdout: string;
  /** Trimmed: a bad-input failure is one line. */
  stderr: string;
}

/** `deno run --quiet <permissions> src/cli/<script>.ts <args>`; the default permissions are most tasks'. */
export async function runCli(
  script: string,
  args: readonly string[],
  permissions: readonly string[] = ["--allow-read", "--allow-env", "--allow-write"],
): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...permissions, `src/cli/${script}.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr).trim() };
}
