// The ffmpeg program as a child process (Deno.Command, --allow-run=ffmpeg): raw frames go to its stdin over a
// pipe and the encoded file comes back on its stdout, so no frame is ever written to disk. Only the encoders
// that the formats need (libx264, libwebp_anim) are asked of it; a missing or incapable ffmpeg is an error
// that names it and says how to install it.

/** Encoders of Debian's ffmpeg package, by what they write. */
export type FfmpegEncoder = "libx264" | "libwebp_anim";

export const FFMPEG_INSTALL =
  "install ffmpeg: `apt-get install -y ffmpeg` (Debian, Ubuntu; tools/system_packages.sh does this), " +
  "`dnf install ffmpeg` (Fedora) or `brew install ffmpeg` (macOS)";

/** ffmpeg cannot run (missing, not permitted, or without an encoder), or it failed on the frames. */
export class FfmpegError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FfmpegError";
  }
}

/** Why `binary` could not be started, with the fix. */
function unstartable(binary: string, e: unknown): FfmpegError {
  if (e instanceof Deno.errors.NotFound) {
    return new FfmpegError(`ffmpeg is not installed (no \`${binary}\` on PATH); ${FFMPEG_INSTALL}`);
  }
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return new FfmpegError(`not allowed to run ffmpeg: start deno with --allow-run=${binary}`);
  }
  return new FfmpegError(`ffmpeg (${binary}) could not be started: ${(e as Error).message}`);
}

function spawn(binary: string, args: string[], stdin: "piped" | "null"): Deno.ChildProcess {
  try {
    return new Deno.Command(binary, { args, stdin, stdout: "piped", stderr: "piped" }).spawn();
  } catch (e) {
    throw unstartable(binary, e);
  }
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();

/**
 * Runs ffmpeg with `args` (its input read from pipe:0, its output written to pipe:1), feeding `input` chunk by
 * chunk while its output is collected; resolves to everything it wrote to stdout.
 */
export async function runFfmpeg(
  args: string[],
  input: Iterable<Uint8Array>,
  binary = "ffmpeg",
): Promise<Uint8Array> {
  const child = spawn(binary, ["-hide_banner", "-nostdin", "-loglevel", "error", ...args], "piped");
  // Read stdout and stderr while writing stdin: ffmpeg blocks once a pipe's buffer is full.
  const output = child.output();
  const writer = child.stdin.getWriter();
  try {
    for (const chunk of input) await writer.write(chunk);
    await writer.close();
  } catch {
    // ffmpeg closed its stdin early (it failed): its exit code and stderr below say why.
  }
  const { code, stdout, stderr } = await output;
  if (code !== 0) throw new FfmpegError(`ffmpeg failed (exit code ${code}): ${text(stderr)}`);
  return stdout;
}

/** For each encoder: null when ffmpeg runs and has it; otherwise why it cannot be used, with the fix. */
export async function ffmpegLacks(
  encoders: readonly FfmpegEncoder[],
  binary = "ffmpeg",
): Promise<Map<FfmpegEncoder, string | null>> {
  const answer = (why: (encoder: FfmpegEncoder) => string | null) =>
    new Map(encoders.map((encoder) => [encoder, why(encoder)]));
  let result: Deno.CommandOutput;
  try {
    result = await spawn(binary, ["-hide_banner", "-encoders"], "null").output();
  } catch (e) {
    const why = e instanceof FfmpegError ? e.message : unstartable(binary, e).message;
    return answer(() => why);
  }
  if (!result.success) {
    return answer(() => `\`${binary} -encoders\` failed (exit code ${result.code}): ${text(result.stderr)}`);
  }
  // Lines such as " V....D libx264  libx264 H.264 / AVC ...": the name is the second word.
  const listed = new Set(text(result.stdout).split("\n").map((line) => line.trim().split(/\s+/)[1]));
  return answer((encoder) =>
    listed.has(encoder) ? null : `this ffmpeg has no ${encoder} encoder; ${FFMPEG_INSTALL}`
  );
}
