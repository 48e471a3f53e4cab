// startServer: services + app on a real socket (Deno.serve). Used by main.ts, the browser test and the server
// benchmark. Resolves once the GPU worker is ready (model loaded), so the returned URL serves at once.
import { createApp } from "./app.ts";
import type { WorkerFactory } from "./gpu_worker_client.ts";
import { DEFAULT_SERVER_OPTIONS, type ServerOptions } from "./options.ts";
import { createServices } from "./services.ts";

export interface StartOptions extends Partial<ServerOptions> {
  /** Replaces the GPU worker (tests inject one that can crash on demand). */
  spawnWorker?: WorkerFactory;
}

export interface RunningServer {
  /** http://host:port, with the port actually bound (port 0 picks a free one). */
  url: string;
  adapter: string;
  options: ServerOptions;
  /** Stops accepting, cancels queued and running jobs (they answer 503), waits for responses, stops the worker. */
  shutdown(): Promise<void>;
}

export async function startServer(start: StartOptions = {}): Promise<RunningServer> {
  const { spawnWorker, ...given } = start;
  const options: ServerOptions = { ...DEFAULT_SERVER_OPTIONS, ...given };
  const services = await createServices(options, spawnWorker);
  let adapter: string;
  try {
    adapter = (await services.worker.ready()).adapter;
  } catch (e) {
    services.close();
    throw e;
  }
  const app = createApp(services.deps);
  const server = Deno.serve({ port: options.port, hostname: options.host, onListen: () => {} }, app.fetch);
  let stopped: Promise<void> | null = null;
  return {
    url: `http://${options.host.includes(":") ? `[${options.host}]` : options.host}:${server.addr.port}`,
    adapter,
    options: { ...options, port: server.addr.port },
    shutdown: () =>
      stopped ??= (async () => {
        services.deps.generator.shutdown();
        await server.shutdown();
        services.close();
      })(),
  };
}
