import assert from "node:assert/strict";
import {
  decodeToFloat32,
  forEachTensor,
  readSafetensorsHeader,
  WeightsError,
} from "../../src/model/safetensors.ts";
import { checkKeys } from "../../src/model/weights.ts";
import { encodeSafetensors } from "../support/safetensors_writer.ts";
import { withTempDir } from "../support/temp.ts";

const VALUES = [1.5, -2, 0.25, 1024, -0.0078125, 3];

let written = 0;

/** Writes into the current test's temporary directory. */
async function writeTemp(dir: string, bytes: Uint8Array): Promise<string> {
  const path = `${dir}/${written++}.safetensors`;
  await Deno.writeFile(path, bytes);
  return path;
}

function sample(): Uint8Array {
  return encodeSafetensors({
    "a.weight": { dtype: "F32", shape: [2, 3], data: VALUES },
    "b.half": { dtype: "F16", shape: [6], data: VALUES },
    "c.brain": { dtype: "BF16", shape: [3, 2], data: VALUES },
  }, { format: "pt" });
}

Deno.test("safetensors: F32, F16 and BF16 tensors decode to the same float32 values", () =>
  withTempDir(async (dir) => {
    const path = await writeTemp(dir, sample());
    const header = await readSafetensorsHeader(path);
    assert.deepEqual(header.metadata, { format: "pt" });
    assert.deepEqual(header.tensors.get("c.brain")?.shape, [3, 2]);
    const seen: string[] = [];
    await forEachTensor(header, header.tensors.keys(), (entry, data) => {
      seen.push(entry.name);
      assert.deepEqual([...data], VALUES, entry.name);
    });
    assert.deepEqual(seen.sort(), ["a.weight", "b.half", "c.brain"]);
  }));

Deno.test("safetensors: bf16 widening keeps the exponent (1e30 survives)", () => {
  const word = new Uint32Array(new Float32Array([1e30]).buffer)[0] >>> 16;
  const decoded = decodeToFloat32("BF16", new Uint8Array(new Uint16Array([word]).buffer));
  assert.ok(Math.abs(decoded[0] / 1e30 - 1) < 1e-2);
});

Deno.test("safetensors: a missing file, truncation and a corrupt header are named errors", () =>
  withTempDir(async (dir) => {
    await assert.rejects(
      readSafetensorsHeader("/nonexistent/w.safetensors"),
      /w\.safetensors: file not found/,
    );
    const full = sample();
    const truncated = await writeTemp(dir, full.slice(0, full.length - 5));
    await assert.rejects(
      readSafetensorsHeader(truncated),
      (e) =>
        e instanceof WeightsError && e.message.includes(truncated) &&
        /tensor "c\.brain": data ends/.test(e.message),
    );
    const garbage = full.slice();
    garbage.set(new TextEncoder().encode("{{{{"), 8);
    await assert.rejects(readSafetensorsHeader(await writeTemp(dir, garbage)), /header is not valid JSON/);
    const hugeLength = full.slice();
    new DataView(hugeLength.buffer).setBigUint64(0, 1n << 40n, true);
    await assert.rejects(
      readSafetensorsHeader(await writeTemp(dir, hugeLength)),
      /header length \d+ does not fit the file/,
    );
    await assert.rejects(
      readSafetensorsHeader(await writeTemp(dir, new Uint8Array(3))),
      /too short to be safetensors/,
    );
  }));

Deno.test("safetensors: a wrong dtype or a size that disagrees with the shape names the tensor", () =>
  withTempDir(async (dir) => {
    const bytes = encodeSafetensors({ "x": { dtype: "F32", shape: [2], data: [1, 2] } });
    const text = new TextDecoder().decode(bytes);
    const wrongDtype = new TextEncoder().encode(text.replace('"F32"', '"I64"'));
    await assert.rejects(
      readSafetensorsHeader(await writeTemp(dir, wrongDtype)),
      /tensor "x": dtype "I64" is not one of/,
    );
    const wrongShape = new TextEncoder().encode(text.replace("[2]", "[3]"));
    await assert.rejects(
      readSafetensorsHeader(await writeTemp(dir, wrongShape)),
      /tensor "x": 8 bytes stored, shape \[3\] F32 needs 12/,
    );
  }));

Deno.test("weights: missing, unexpected and mis-shaped tensors are all listed in one error", () =>
  withTempDir(async (dir) => {
    const header = await readSafetensorsHeader(await writeTemp(dir, sample()));
    const expected = new Map([["a.weight", [3, 2]], ["b.half", [6]], ["d.gone", [1]]]);
    assert.throws(() => checkKeys(header, expected), (e) => {
      assert.ok(e instanceof WeightsError);
      assert.match(e.message, /missing tensors: d\.gone/);
      assert.match(e.message, /unexpected tensors: c\.brain/);
      assert.match(e.message, /tensor "a\.weight": expected shape \[3, 2\], found \[2, 3\]/);
      return true;
    });
  }));
