// WanPipeline's prompt cleaning and tokenizer call against diffusers and transformers
// (tests/fixtures/wan/umt5-prompts.json, written by tools/umt5_fixtures.py with ftfy installed, as Wan's
// docs ask): prompt_clean's output, with and without ftfy, and the ids and attention-mask length of the
// umT5-style tokenizer (tests/fixtures/wan/umt5-tokenizer) at max_sequence_length 16 and 512.
import assert from "node:assert/strict";
import { PromptTokenizer } from "../../src/model/text/tokenizer.ts";
import { cleanPrompt, htmlUnescape } from "../../src/pipeline/text/wan_prompt_clean.ts";

const FIXTURES = "tests/fixtures/wan";

interface Tokens {
  ids: number[];
  mask_length: number;
  tokens: number;
}

interface Case {
  name: string;
  prompt: string;
  clean: string;
  clean_without_ftfy: string;
  ftfy_changes: boolean;
  html_unescape_twice: string;
}

/** transformers' ids of the text diffusers tokenizes with ftfy (as it ran), or of the text without it. */
const tokensOf = (c: Case, maxLength: number, ftfy: boolean) =>
  (c as unknown as Record<string, Tokens>)[`tokens_${ftfy ? "" : "without_ftfy_"}${maxLength}`];

const fixture = JSON.parse(await Deno.readTextFile(`${FIXTURES}/umt5-prompts.json`)) as {
  max_lengths: number[];
  cases: Case[];
};
const cases = fixture.cases;
const tokenizer = await PromptTokenizer.load(`${FIXTURES}/umt5-tokenizer`, "t5");

/** Where ftfy.fix_text (which the engine skips) changes the text in diffusers: the documented deviations. */
const FTFY_CHANGES = [
  "double escaped",
  "unicode whitespace",
  "wan negative prompt",
  "curly quotes",
  "mojibake",
];

Deno.test("prompt_clean: html.unescape twice matches Python's on every fixture prompt", () => {
  const wrong = cases.filter((c) => htmlUnescape(htmlUnescape(c.prompt)) !== c.html_unescape_twice);
  assert.deepEqual(wrong.map((c) => c.name), []);
});

Deno.test("prompt_clean matches diffusers without ftfy, and with it wherever ftfy changes nothing", () => {
  for (const c of cases) {
    assert.equal(cleanPrompt(c.prompt), c.clean_without_ftfy, `${c.name}: against prompt_clean without ftfy`);
  }
  assert.deepEqual(cases.filter((c) => c.ftfy_changes).map((c) => c.name), FTFY_CHANGES);
  const ordinary = cases.filter((c) => !c.ftfy_changes);
  assert.ok(ordinary.some((c) => c.name === "simple") && ordinary.some((c) => c.name === "html entities"));
  for (const c of ordinary) assert.equal(cleanPrompt(c.prompt), c.clean, `${c.name}: against prompt_clean`);
  // The cases above exercise: whitespace runs collapsed and the ends stripped, entities decoded twice.
  assert.equal(cleanPrompt("  a   red\tfox \n "), "a red fox");
  assert.equal(cleanPrompt("&amp;lt;b&amp;gt;"), "<b>");
});

for (const maxLength of fixture.max_lengths) {
  Deno.test(`WanPipeline's tokenizer call gives transformers' ids and mask length at ${maxLength}`, () => {
    const problems: string[] = [];
    for (const c of cases) {
      // Without ftfy the engine tokenizes what diffusers would without it.
      const want = tokensOf(c, maxLength, !c.ftfy_changes);
      const got = tokenizer.encode(cleanPrompt(c.prompt), maxLength);
      const at = want.ids.findIndex((id, i) => got.ids[i] !== id);
      const maskLength = Math.min(got.tokens, maxLength);
      if (
        got.ids.length !== maxLength || at >= 0 || got.tokens !== want.tokens ||
        maskLength !== want.mask_length
      ) {
        problems.push(
          `${c.name}: tokens ${got.tokens} (want ${want.tokens}), mask ${maskLength} (want ${want.mask_length}), ` +
            `first differing id at ${at}: ${got.ids[at]} (want ${want.ids[at]})`,
        );
      }
      assert.equal(got.truncated, want.tokens > maxLength, `${c.name}: truncated`);
    }
    assert.deepEqual(problems, []);
  });
}

Deno.test("Wan's own negative prompt gets diffusers' ids with ftfy too: the tokenizer's NFKC redoes its fix", () => {
  const c = cases.find((c) => c.name === "wan negative prompt")!;
  assert.notEqual(c.clean, c.clean_without_ftfy, "ftfy rewrites its fullwidth commas");
  for (const maxLength of fixture.max_lengths) {
    assert.deepEqual(
      [...tokenizer.encode(cleanPrompt(c.prompt), maxLength).ids],
      tokensOf(c, maxLength, true).ids,
    );
  }
});

Deno.test("umT5's tokenizer.json (unk_id 3, byte_fallback) is read as transformers 5 reads it", () => {
  // A character outside the vocabulary gets id 2 (<s> in umT5's layout), not 3 or byte pieces.
  const c = cases.find((c) => c.name === "unknown characters")!;
  const ids = [...tokenizer.encode(cleanPrompt(c.prompt), 16).ids];
  assert.deepEqual(ids, tokensOf(c, 16, true).ids);
  assert.ok(ids.includes(2) && !ids.includes(3), `ids ${ids}`);
  // Literal special tokens are matched whole; <pad> inside the prompt is id 0 but still a real token.
  const specials = cases.find((c) => c.name === "literal special tokens")!;
  const encoded = tokenizer.encode(cleanPrompt(specials.prompt), 512);
  const real = Math.min(encoded.tokens, 512);
  assert.ok(encoded.ids.subarray(0, real).includes(0), "the prompt's own <pad>");
  assert.equal(real, tokensOf(specials, 512, true).mask_length);
});
