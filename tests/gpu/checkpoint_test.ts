// Components stored as one file or as shards: the same tensors load either way, in their stored dtype where
// the loader keeps it; a missing shard, a bad index, a .bin checkpoint and a tensor over the adapter's
// binding limit are named before anything is allocated.
import assert from "node:assert/strict";
import { openCheckpoint } from "../../src/model/checkpoint.ts";
import { WeightsError } from "../../src/model/safetensors.ts";
import { loadCheckpoint, planBytes } from "../../src/model/weights.ts";
import { readFloats } from "../../src/gpu/readback.ts";
import { gpuTest } from "../support/gpu.ts";
import { encodeSafetensors } from "../support/safetensors_writer.ts";
import { withTempDir } from "../support/temp.ts";

const A = { dtype: "BF16" as const, shape: [2, 3], data: [1, 2, 3, 4, 5, 6.5] };
const B = { dtype: "F16" as const, shape: [3], data: [0.5, -1, 2] };
const EXPECTED = new Map([["a.weight", [2, 3]], ["b.bias", [3]]]);

async function sharded(dir: string) {
  await Deno.writeFile(`${dir}/m-00001.safetensors`, encodeSafetensors({ "a.weight": A }));
  await Deno.writeFile(`${dir}/m-00002.safetensors`, encodeSafetensors({ "b.bias": B }));
  const weight_map = { "a.weight": "m-00001.safetensors", "b.bias": "m-00002.safetensors" };
  await Deno.writeTextFile(
    `${dir}/diffusion_pytorch_model.safetensors.index.json`,
    JSON.stringify({ weight_map }),
  );
}

const named = (pattern: RegExp) => (e: unknown) => e instanceof WeightsError && pattern.test(e.message);

gpuTest(
  "a sharded component loads like a single file; matrices stay BF16, vectors become f32",
  (ctx) =>
    withTempDir(async (dir) => {
      await sharded(dir);
      const checkpoint = await openCheckpoint(dir);
      assert.equal(checkpoint.files.length, 2);
      const tensors = await loadCheckpoint(ctx, checkpoint, EXPECTED);
      assert.equal(tensors.get("a.weight")!.dtype, "bf16");
      assert.equal(tensors.get("b.bias")!.dtype, "f32");
      assert.deepEqual([...(await readFloats(ctx.gpu, tensors.get("b.bias")!))], B.data);
      assert.equal(planBytes(ctx, checkpoint, EXPECTED.keys()), 6 * 2 + 3 * 4);
      for (const t of tensors.values()) t.release();
    }),
);

gpuTest(
  "checkpoint problems name the file: a missing shard, a bad index, a .bin, nothing at all",
  () =>
    withTempDir(async (dir) => {
      await assert.rejects(
        openCheckpoint(dir),
        named(/no diffusion_pytorch_model.safetensors or .*index.json$/),
      );
      await Deno.writeFile(`${dir}/diffusion_pytorch_model.bin`, new Uint8Array(8));
      await assert.rejects(openCheckpoint(dir), named(/\.bin is PyTorch's pickle format, which is not read/));
      await sharded(dir);
      await Deno.remove(`${dir}/m-00002.safetensors`);
      await assert.rejects(
        openCheckpoint(dir),
        named(/m-00002.safetensors: file not found \(named by .*index.json\)/),
      );
      const index = `${dir}/diffusion_pytorch_model.safetensors.index.json`;
      await Deno.writeTextFile(
        index,
        JSON.stringify({ weight_map: { "a.weight": "../elsewhere.safetensors" } }),
      );
      await assert.rejects(
        openCheckpoint(dir),
        named(/shard "..\/elsewhere.safetensors" is not a file name/),
      );
      await Deno.writeTextFile(index, "{not json");
      await assert.rejects(openCheckpoint(dir), named(/index.json: not a safetensors index/));
    }),
);

gpuTest(
  "a tensor larger than one binding is refused with both sizes, before any upload",
  (ctx) =>
    withTempDir(async (dir) => {
      const limit = Math.min(
        ctx.gpu.info.limits.maxStorageBufferBindingSize,
        ctx.gpu.info.limits.maxBufferSize,
      );
      // A header that declares a matrix one element over the limit; its data is never read.
      const rows = Math.floor(limit / 2 / 1024) + 1;
      const header = {
        "big.weight": { dtype: "BF16", shape: [rows, 1024], data_offsets: [0, rows * 1024 * 2] },
      };
      const json = new TextEncoder().encode(JSON.stringify(header).padEnd(256));
      const file = await Deno.open(`${dir}/diffusion_pytorch_model.safetensors`, {
        write: true,
        create: true,
      });
      await file.write(new Uint8Array(new BigUint64Array([BigInt(json.length)]).buffer));
      await file.write(json);
      await file.truncate(8 + json.length + rows * 1024 * 2); // sparse: declared bytes, none written
      file.close();
      const before = ctx.pool.stats().buffersInUse;
      await assert.rejects(
        loadCheckpoint(ctx, await openCheckpoint(dir), new Map([["big.weight", [rows, 1024]]])),
        named(/tensor "big.weight" needs [\d.]+ (MiB|GiB), the adapter allows [\d.]+ (MiB|GiB) per buffer/),
      );
      assert.equal(ctx.pool.stats().buffersInUse, before);
    }),
);
