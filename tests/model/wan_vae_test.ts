// AutoencoderKLWan's decoder against diffusers' vae.decode (tools/wan_vae_fixtures.py): WanPipeline's
// de-normalisation, then chunk by chunk the decoder's stages (first and last chunk), every chunk's frames and
// the whole video through decode(). a: Wan2.1's layout (two upsample3d levels), F32, F = 1, 2, 4; b: the
// temporal level second, two samples, odd z_dim, decoder_base_dim, BF16, F = 1, 3. Then the memory a decode
// holds, which must not grow with the number of frames.
import assert from "node:assert/strict";
import type { GpuContext } from "../../src/gpu/context.ts";
import { submitDispatches } from "../../src/gpu/kernel.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { parseConfig, readJsonFile } from "../../src/model/component_config.ts";
import { wanVaeConfigSchema } from "../../src/model/wan_vae/config.ts";
import { WanVaeDecoder } from "../../src/model/wan_vae/decoder.ts";
import { assertClose, type Tolerance } from "../support/assert_close.ts";
import { type Fixture, fixtureTensor, readFixture } from "../support/fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const FIXTURES = "tests/fixtures/wan";
// f32 on both sides from the same weights: conv sums, RMS norms and the softmax round differently, and the
// activations (RMS-normalised to ~1 per channel, times sqrt(C)) reach ~10 before each norm; the bound is
// relative too. A wrong tap, frame, cache entry or channel block is off by ~1e-1 or more.
const TOL: Tolerance = { atol: 1e-4, rtol: 1e-4 };
// De-normalisation: one f32 division and one addition each side.
const AFFINE_TOL: Tolerance = { atol: 1e-6, rtol: 1e-6 };

const CASES = [
  { name: "a", frames: [1, 2, 4] },
  { name: "b", frames: [1, 3] },
];

async function loadVae(ctx: GpuContext, name: string): Promise<WanVaeDecoder> {
  const path = `${FIXTURES}/vae-${name}/config.json`;
  return await WanVaeDecoder.load(
    ctx,
    `${FIXTURES}/vae-${name}`,
    parseConfig(path, await readJsonFile(path), wanVaeConfigSchema),
  );
}

function upload(ctx: GpuContext, fixture: Fixture, name: string) {
  return ctx.pool.upload(fixtureTensor(fixture, name), fixture.tensors.get(name)!.shape);
}

/** Frame-major [T, B, C, H, W] (the engine's) -> diffusers' [B, C, T, H, W]. */
function channelMajor(values: Float32Array, shape: readonly number[]): Float32Array {
  const [t, b, c, h, w] = shape;
  const plane = h * w;
  const out = new Float32Array(values.length);
  for (let f = 0; f < t; f++) {
    for (let k = 0; k < b * c; k++) {
      out.set(values.subarray((f * b * c + k) * plane, (f * b * c + k + 1) * plane), (k * t + f) * plane);
    }
  }
  return out;
}

/** Frames [start, start + count) of a [B, C, F, H, W] tensor. */
function frameSlice(
  values: Float32Array,
  shape: readonly number[],
  start: number,
  count: number,
): Float32Array {
  const [b, c, frames, h, w] = shape;
  const plane = h * w;
  const out = new Float32Array(b * c * count * plane);
  for (let k = 0; k < b * c; k++) {
    out.set(
      values.subarray((k * frames + start) * plane, (k * frames + start + count) * plane),
      k * count * plane,
    );
  }
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** Compares, and keeps the worst difference for the log line. */
function check(
  worst: Map<string, number>,
  got: Float32Array,
  want: Float32Array,
  tol: Tolerance,
  what: string,
) {
  assertClose(got, want, tol, what);
  const stage = what.replace(/^chunk\d+\./, "");
  worst.set(stage, Math.max(worst.get(stage) ?? 0, maxDiff(got, want)));
}

for (const { name, frames } of CASES) {
  for (const f of frames) {
    gpuTest(
      `Wan VAE decoder ${name}, ${f} latent frame(s), matches diffusers' decode chunk by chunk`,
      async (ctx) => {
        const vae = await loadVae(ctx, name);
        const fixture = await readFixture(`${FIXTURES}/vae-${name}-decode-${f}.safetensors`);
        const worst = new Map<string, number>();
        const normalized = upload(ctx, fixture, "normalized");
        const denormalized = vae.denormalize(normalized);
        submitDispatches(ctx.gpu, denormalized.dispatches);
        await ctx.kernels.ready();
        check(
          worst,
          await readFloats(ctx.gpu, denormalized.out),
          fixtureTensor(fixture, "z"),
          AFFINE_TOL,
          "z",
        );

        const z = upload(ctx, fixture, "z");
        const [batch, , latentFrames, height, width] = z.shape;
        assert.equal(latentFrames, f);
        const graphs = vae.chunkGraphs(batch, height, width);
        const sampleShape = fixture.tensors.get("sample")!.shape;
        const sample = fixtureTensor(fixture, "sample");
        const postQuant = fixtureTensor(fixture, "post_quant_conv");
        await ctx.kernels.ready();
        let start = 0;
        for (let i = 0; i < f; i++) {
          const graph = i === 0 ? graphs.first : graphs.later;
          submitDispatches(ctx.gpu, [...(i === 0 ? graphs.reset : []), ...vae.frameInput(z, i, graphs)]);
          let done = 0;
          for (const { name: stage, tensor, after } of graph.stages) {
            const key = `chunk${i}.${stage}`;
            const expected = stage === "post_quant_conv"
              ? frameSlice(postQuant, z.shape, i, 1)
              : fixture.tensors.get(key)?.data;
            if (!expected) continue;
            submitDispatches(ctx.gpu, graph.commands.slice(done, after));
            done = after;
            check(worst, channelMajor(await readFloats(ctx.gpu, tensor), tensor.shape), expected, TOL, key);
          }
          submitDispatches(ctx.gpu, graph.commands.slice(done));
          const t = graph.output.shape[0];
          const clamped = channelMajor(await readFloats(ctx.gpu, graph.output), graph.output.shape)
            .map((v) => Math.min(1, Math.max(-1, v)));
          check(worst, clamped, frameSlice(sample, sampleShape, start, t), TOL, `chunk${i}.sample`);
          start += t;
        }
        assert.equal(start, sampleShape[2], "frames decoded");

        const decoded = await vae.decode(z);
        assert.deepEqual(decoded.shape, sampleShape);
        check(worst, decoded.data, sample, TOL, "decode()");
        console.log(
          `vae-${name} F=${f} max |diff|: ${
            [...worst].map(([s, d]) => `${s} ${d.toExponential(1)}`).join(", ")
          }`,
        );
        for (const t of [normalized, z]) {
          t.release();
        }
        vae.release();
      },
    );
  }
}

gpuTest(
  "Wan VAE decoder: a longer video allocates nothing more (two graphs, one cache, frames read back per chunk)",
  async (ctx) => {
    const vae = await loadVae(ctx, "a");
    const inputs = await Promise.all(
      [2, 4].map((f) => readFixture(`${FIXTURES}/vae-a-decode-${f}.safetensors`)),
    );
    const [short, long] = inputs.map((fixture) => upload(ctx, fixture, "z"));
    const first = await vae.decode(short);
    const after = ctx.pool.stats();
    const again = await vae.decode(long);
    assert.deepEqual(ctx.pool.stats(), after, "pool after 2 latent frames vs after 4");
    assert.equal(again.shape[2], 13);
    assert.equal(first.shape[2], 5);
    const { activations, featureCache } = vae.chunkGraphs(1, 2, 3).bytes;
    // Measured at 2x3 latents (16x24 frames): the largest live set of one later chunk and the 2-frame histories.
    console.log(
      `vae-a decode: ${activations} activation bytes, ${featureCache} feature cache bytes, weights ${vae.weightBytes}`,
    );
    assert.ok(
      activations < 8 * 16 * 24 * 4 * 4 * 8,
      `activations ${activations} bytes: at most ~8 full-size [4, 1, 8, 16, 24] tensors`,
    );
    for (const t of [short, long]) t.release();
    vae.release();
  },
);
