// deno task serve: the only file that reads the environment, opens a port and sets the exit code.
// Bad settings exit 2; no GPU adapter (or a model that fails to load) exits 1; SIGINT/SIGTERM exit 0 after
// in-flight requests are answered. `--self-check` instead compiles and checks every kernel and exits.
import { acquireGpuOrExplain } from "./cli/acquire_gpu.ts";
import { selfCheck } from "./self_check/self_check.ts";
import { ApiError } from "./server/api_error.ts";
import { WorkerUnavailableError } from "./server/gpu_worker_client.ts";
import { parseServerOptions, ServerOptionsError } from "./server/options.ts";
import { startServer } from "./server/start.ts";

async function checkKernels(): Promise<number> {
  const ctx = await acquireGpuOrExplain();
  if (!ctx) return 1;
  const { adapter, backend, features } = ctx.gpu.info;
  console.log(JSON.stringify({ adapter, backend, features }));
  const results = await selfCheck(ctx);
  for (const r of results) {
    console.log(`${r.ok ? "ok  " : "FAIL"} ${r.kernel}: max |diff| ${r.maxAbsErr.toExponential(2)}`);
  }
  ctx.destroy();
  return results.every((r) => r.ok) ? 0 : 1;
}

async function serve(args: string[]): Promise<number> {
  let options;
  try {
    options = parseServerOptions(Deno.env.toObject(), args);
  } catch (e) {
    if (!(e instanceof ServerOptionsError)) throw e;
    console.error(e.message);
    return 2;
  }
  let server;
  try {
    server = await startServer(options);
  } catch (e) {
    if (!(e instanceof WorkerUnavailableError || e instanceof ApiError)) throw e;
    console.error(e.message);
    return 1;
  }
  const o = server.options;
  console.log(
    `ditserve listening on ${server.url} (adapter: ${server.adapter}, model: ${o.defaultModel}, ` +
      `models dir: ${o.modelsDir}, max queue: ${o.maxQueue}, request timeout: ${o.requestTimeoutS} s, ` +
      `API key: ${o.apiKey ? "required" : "off"}, CORS: ${o.corsOrigin ?? "off"})`,
  );
  const stop = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, () => stop.resolve());
  await stop.promise;
  console.log("ditserve shutting down (a second SIGINT/SIGTERM exits at once)");
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, () => Deno.exit(130));
  await server.shutdown();
  return 0;
}

if (import.meta.main) {
  Deno.exit(Deno.args.includes("--self-check") ? await checkKernels() : await serve(Deno.args));
}
