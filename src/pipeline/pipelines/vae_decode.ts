// The decode stage of a latent-diffusion pipeline: its vae/ decoder loaded beside the transformer, then z (the
// latents already mapped into the VAE's space, on the GPU) through AutoencoderKL's decoder, in one graph or,
// when one would not fit within the adapter's binding limits, in diffusers' tiles.
import type { GpuContext } from "../../gpu/context.ts";
import { copyCommand } from "../../gpu/kernel.ts";
import type { StepRecorder } from "../../gpu/step_recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { AutoencoderKlConfig } from "../../model/vae/config.ts";
import { AutoencoderKlDecoder } from "../../model/vae/decoder.ts";
import { decodeTiled, largestActivationBytes } from "../../model/vae/tiled_decode.ts";

type Shape = [number, number, number, number];

/**
 * The directory's vae/ decoder for a pipeline whose transformer is loaded: a VAE that fails to load releases
 * the transformer, so a failed pipeline load leaves nothing on the GPU.
 */
export async function loadVae(
  ctx: GpuContext,
  card: { dir: string; vae: AutoencoderKlConfig },
  transformer: { release(): void },
): Promise<AutoencoderKlDecoder> {
  try {
    return await AutoencoderKlDecoder.load(ctx, `${card.dir}/vae`, card.vae);
  } catch (e) {
    transformer.release();
    throw e;
  }
}

export async function decodeLatents(
  ctx: GpuContext,
  vae: AutoencoderKlDecoder,
  z: Tensor,
  recorder: StepRecorder,
): Promise<{ images: Float32Array; shape: Shape }> {
  const shape = z.shape as Shape;
  const limit = ctx.gpu.info.limits.maxStorageBufferBindingSize;
  if (largestActivationBytes(vae.config, shape) > limit) {
    const decoded = await decodeTiled(ctx, vae, { data: await recorder.read(z), shape });
    return { images: decoded.data, shape: decoded.shape };
  }
  const decoder = vae.graph(shape);
  recorder.encode([copyCommand("vae input", z, decoder.z), ...decoder.commands]);
  return { images: await recorder.read(decoder.output), shape: decoder.output.shape as Shape };
}
