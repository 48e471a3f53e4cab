// Every command-line entry point meets a machine without a GPU adapter the same way: one line naming the
// fix on stderr, exit code 1, no stack trace.
import { GpuContext } from "../gpu/context.ts";
import { NoAdapterError } from "../gpu/device.ts";

/** The context, or null after printing why there is none. Other errors propagate. */
export async function acquireGpuOrExplain(): Promise<GpuContext | null> {
  try {
    return await GpuContext.create();
  } catch (e) {
    if (!(e instanceof NoAdapterError)) throw e;
    console.error(e.message);
    return null;
  }
}
