// The PyTorch side of a model benchmark: a tools/ script run on the same weights in the same run, whose last
// line of stdout is its JSON report. diffusers is not installed (references.md): its src/ goes on PYTHONPATH.

const env = (diffusersSrc: string | undefined): Record<string, string> =>
  diffusersSrc ? { PYTHONPATH: diffusersSrc } : {};

const lastLine = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim().split("\n").pop() ?? "";

/** Runs `python script ...args` and parses its last stdout line; a failure names the script and its error. */
export async function pythonReference<T>(
  python: string,
  diffusersSrc: string | undefined,
  script: string,
  args: string[],
): Promise<T> {
  const out = await new Deno.Command(python, {
    args: [script, ...args],
    env: env(diffusersSrc),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`${python} ${script} failed: ${lastLine(out.stderr)}`);
  return JSON.parse(lastLine(out.stdout));
}

/**
 * Why `--python` cannot serve as the reference (it is missing, or cannot import `modules` with
 * `--diffusers-src` on its path), or null: asked before the engine's side, which can take an hour.
 */
export async function pythonProblem(
  python: string,
  diffusersSrc: string | undefined,
  modules: string[],
): Promise<string | null> {
  const where = diffusersSrc ? ` with --diffusers-src ${diffusersSrc}` : "";
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", `import ${modules.join(", ")}`],
      env: env(diffusersSrc),
      stdout: "null",
      stderr: "piped",
    }).output();
    return out.success
      ? null
      : `--python ${python}: cannot import ${modules.join(", ")}${where}: ${lastLine(out.stderr)}`;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return `--python ${python}: no such program`;
    throw e;
  }
}
