// bench:model's prompts for a text-to-digit model: prompts.json's held-out phrasings, every digit in turn,
// each digit cycling through its own phrasings; a prompts.json without them is named.
import assert from "node:assert/strict";
import { benchPrompts, heldOutPrompts, requireHeldOutPrompts } from "../../src/cli/bench/heldout_prompts.ts";
import { WeightsError } from "../../src/model/safetensors.ts";
import { withTempDir } from "../support/temp.ts";

Deno.test("bench:model prompts: mnist-flux's held-out phrasings, digits interleaved, phrasings cycled", async () => {
  const byDigit = await requireHeldOutPrompts("weights/mnist-flux");
  assert.equal(byDigit.length, 10);
  const heldout = JSON.parse(await Deno.readTextFile("weights/mnist-flux/prompts.json")).heldout;
  assert.equal(byDigit.flat().length, heldout.length);
  const images = benchPrompts(byDigit, byDigit[3].length + 1);
  assert.deepEqual(images.slice(0, 10).map((c) => c.digit), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const threes = images.filter((c) => c.digit === 3).map((c) => c.prompt);
  assert.deepEqual(threes, [...byDigit[3], byDigit[3][0]]);
  assert.ok(
    threes.every((p) =>
      heldout.some((h: { prompt: string; digit: number }) => h.prompt === p && h.digit === 3)
    ),
  );
});

Deno.test("bench:model prompts: a prompts.json without every digit's held-out phrasings is named", async () => {
  await withTempDir(async (dir) => {
    assert.equal(await heldOutPrompts(dir), null);
    await assert.rejects(
      requireHeldOutPrompts(dir),
      (e) => e instanceof WeightsError && /prompts\.json: file not found/.test(e.message),
    );
    await Deno.writeTextFile(
      `${dir}/prompts.json`,
      JSON.stringify({ heldout: [{ prompt: "a 1", digit: 1 }] }),
    );
    await assert.rejects(heldOutPrompts(dir), /no held-out phrasing of the digit 0/);
  });
});
