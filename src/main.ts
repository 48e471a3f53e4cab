// deno task serve: the only file that reads the environment, opens a port and sets the exit code.
// Bad settings exit 2; no GPU adapter (or a model that fails to load) exits 1; SIGINT/SIGTERM exit 0 after
// in-flight requests are answered.
import { ApiError } from "./server/api_error.ts";
import { WorkerUnavailableError } from "./server/gpu_worker_client.ts";
import { parseServerOptions, ServerOptionsError } from "./server/options.ts";
import { startServer } from "./server/start.ts";

async function main(): Promise<number> {
  let options;
  try {
    options = parseServerOptions(Deno.env.toObject(), Deno.args);
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
  console.log("ditserve shutting down");
  await server.shutdown();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
