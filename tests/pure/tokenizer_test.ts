// FLUX's two tokenizers against transformers: the ids, truncation flags and untruncated lengths that
// FluxPipeline's calls give for every prompt in tests/fixtures/tokenizers/prompts.json, written by
// tools/tokenizer_fixtures.py from a CLIP directory with OpenAI's real BPE table and a small trained T5
// SentencePiece model. Then the directory shapes transformers reads the same way, and every bad directory.
import assert from "node:assert/strict";
import { WeightsError } from "../../src/model/safetensors.ts";
import { PromptTokenizer, readTokenizerSources } from "../../src/model/text/tokenizer.ts";

const ROOT = "tests/fixtures/tokenizers";

interface Expected {
  ids: number[];
  truncated: boolean;
  tokens: number;
}

interface Case {
  name: string;
  prompt: string;
  clip: Expected;
  clip_bare_config?: Expected;
  t5_256: Expected;
  t5_512: Expected;
}

const fixture = JSON.parse(await Deno.readTextFile(`${ROOT}/prompts.json`)) as {
  variants: {
    clip_bare_config: { tokenizer_config: Record<string, unknown> };
    t5_legacy_json: { extra_normalizers: unknown[]; pre_tokenizer: unknown };
  };
  cases: Case[];
};
const cases = fixture.cases;
const named = (pattern: RegExp) => (e: unknown) => e instanceof WeightsError && pattern.test(e.message);

/** Every case whose encoding differs from the expectation, described; [] when all agree. */
function mismatches(
  tokenizer: PromptTokenizer,
  maxLength: number,
  expected: (c: Case) => Expected,
): string[] {
  const out: string[] = [];
  for (const c of cases) {
    const want = expected(c);
    const got = tokenizer.encode(c.prompt, maxLength);
    const at = want.ids.findIndex((id, i) => got.ids[i] !== id);
    if (
      got.ids.length !== maxLength || at >= 0 || got.truncated !== want.truncated ||
      got.tokens !== want.tokens
    ) {
      out.push(
        `${JSON.stringify(c.name)}: tokens ${got.tokens} (want ${want.tokens}), truncated ${got.truncated} ` +
          `(want ${want.truncated}), first differing id at ${at}: ${got.ids[at]} (want ${want.ids[at]})`,
      );
    }
  }
  return out;
}

const clip = await PromptTokenizer.load(`${ROOT}/clip`, "clip");
const t5 = await PromptTokenizer.load(`${ROOT}/t5`, "t5");

Deno.test("tokenizer fixture: the table covers what it should", () => {
  assert.ok(cases.length >= 20);
  assert.ok(cases.some((c) => c.prompt === ""));
  assert.ok(
    cases.some((c) => c.clip.truncated) && cases.some((c) => c.t5_256.truncated && !c.t5_512.truncated),
  );
  assert.ok(cases.some((c) => c.t5_512.truncated));
  assert.ok(cases.some((c) => c.clip.tokens === 77 && !c.clip.truncated));
  assert.ok(cases.some((c) => c.t5_256.tokens === 256 && !c.t5_256.truncated));
});

Deno.test("tokenizer: CLIP ids, truncation and lengths are transformers' for every prompt (77)", () => {
  assert.deepEqual(mismatches(clip, 77, (c) => c.clip), []);
});

Deno.test("tokenizer: T5 ids, truncation and lengths are transformers' for every prompt (256, 512)", () => {
  assert.deepEqual(mismatches(t5, 256, (c) => c.t5_256), []);
  assert.deepEqual(mismatches(t5, 512, (c) => c.t5_512), []);
});

Deno.test("tokenizer: the specials and padding come from the directory's config", () => {
  assert.equal(clip.padId, 49407); // <|endoftext|>, FLUX's CLIP pad token
  assert.equal(clip.modelMaxLength, 77);
  assert.equal(t5.padId, 0);
  const simple = clip.encode("a photo of a cat", 77);
  assert.equal(simple.ids[0], 49406);
  assert.equal(simple.ids[simple.tokens - 1], 49407);
  assert.ok(simple.ids.slice(simple.tokens).every((id) => id === 49407));
  const empty = t5.encode("", 256);
  assert.deepEqual([...empty.ids.slice(0, 3)], [1, 0, 0]);
  assert.equal(empty.tokens, 1);
  assert.equal(empty.truncated, false);
});

Deno.test("tokenizer: maxLength below the special tokens is refused", () => {
  assert.throws(() => clip.encode("cat", 1), RangeError);
  assert.throws(() => t5.encode("cat", 0), RangeError);
  assert.throws(() => t5.encode("cat", 2.5), RangeError);
  assert.equal(clip.encode("cat cat cat", 2).ids.join(), "49406,49407");
  assert.equal(t5.encode("cat cat cat", 1).ids.join(), "1");
});

Deno.test("tokenizer: a CLIP config without added_tokens_decoder (as transformers 5 writes it)", async () => {
  const sources = await readTokenizerSources(`${ROOT}/clip`, "clip");
  sources.config = fixture.variants.clip_bare_config.tokenizer_config;
  sources.specialTokensMap = {};
  const bare = PromptTokenizer.build("clip", sources);
  // Its special tokens are matched before normalisation, so "<|STARTOFTEXT|>" is no longer one.
  assert.ok(cases.some((c) => c.clip_bare_config));
  assert.deepEqual(mismatches(bare, 77, (c) => c.clip_bare_config ?? c.clip), []);
});

Deno.test("tokenizer: a CLIP directory with only tokenizer.json reads the same vocabulary", async () => {
  const sources = await readTokenizerSources(`${ROOT}/clip`, "clip");
  const model = {
    type: "BPE",
    vocab: sources.vocab,
    merges: sources.merges!.map((line, i) => i % 2 ? line.split(" ") : line), // both spellings
  };
  const fromJson = PromptTokenizer.build("clip", {
    ...sources,
    vocab: undefined,
    merges: undefined,
    tokenizerJson: { model },
  });
  assert.deepEqual(mismatches(fromJson, 77, (c) => c.clip), []);
});

Deno.test("tokenizer: an old-style T5 tokenizer.json (FLUX's) gives transformers 5's ids", async () => {
  const sources = await readTokenizerSources(`${ROOT}/t5`, "t5");
  const json = sources.tokenizerJson!;
  const legacy = fixture.variants.t5_legacy_json;
  sources.tokenizerJson = {
    ...json,
    normalizer: { type: "Sequence", normalizers: [json.normalizer, ...legacy.extra_normalizers] },
    pre_tokenizer: legacy.pre_tokenizer,
  };
  const old = PromptTokenizer.build("t5", sources);
  assert.deepEqual(mismatches(old, 256, (c) => c.t5_256), []);
});

Deno.test("tokenizer: missing and broken directories and files are named", async () => {
  await assert.rejects(
    PromptTokenizer.load(`${ROOT}/absent`, "clip"),
    named(/absent: tokenizer directory not found$/),
  );
  await assert.rejects(
    PromptTokenizer.load(`${ROOT}/prompts.json`, "t5"),
    named(/prompts.json: not a directory$/),
  );
  // A CLIP directory needs vocab.json + merges.txt (or tokenizer.json); t5/'s tokenizer.json is no BPE.
  await assert.rejects(
    PromptTokenizer.load(`${ROOT}/spiece_only`, "clip"),
    named(/spiece_only\/vocab.json: file not found$/),
  );
  await assert.rejects(
    PromptTokenizer.load(`${ROOT}/t5`, "clip"),
    named(/t5\/tokenizer.json: model is "Unigram", CLIP needs/),
  );
  // A T5 directory needs tokenizer.json; with only spiece.model the error says how to make one.
  await assert.rejects(
    PromptTokenizer.load(`${ROOT}/clip`, "t5"),
    named(/clip\/tokenizer.json: file not found$/),
  );
  await assert.rejects(
    PromptTokenizer.load(`${ROOT}/spiece_only`, "t5"),
    named(
      /spiece_only\/tokenizer.json: file not found; this directory has only spiece.model.*save_pretrained/,
    ),
  );
  await assert.rejects(
    PromptTokenizer.load(`${ROOT}/broken`, "clip"),
    named(/broken\/vocab.json: not valid JSON/),
  );
  await assert.rejects(
    PromptTokenizer.load(`${ROOT}/broken`, "t5"),
    named(/broken\/tokenizer.json: not valid JSON/),
  );
});

Deno.test("tokenizer: merges, special tokens and sides that cannot be right are named", async () => {
  const sources = await readTokenizerSources(`${ROOT}/clip`, "clip");
  assert.throws(
    () => PromptTokenizer.build("clip", { ...sources, merges: ["a b", "abc"] }),
    named(/clip\/merges.txt: merge 2 is not two symbols: "abc"/),
  );
  assert.throws(
    () => PromptTokenizer.build("clip", { ...sources, config: { ...sources.config, pad_token: "<pad>" } }),
    named(/clip\/tokenizer_config.json: pad_token "<pad>" is not in the vocabulary/),
  );
  assert.throws(
    () => PromptTokenizer.build("clip", { ...sources, config: { ...sources.config, padding_side: "left" } }),
    named(/padding_side "left" is not supported/),
  );
  const decoder = sources.config.added_tokens_decoder as Record<string, Record<string, unknown>>;
  const singleWord = { ...decoder, 49406: { ...decoder[49406], single_word: true } };
  assert.throws(
    () =>
      PromptTokenizer.build("clip", {
        ...sources,
        config: { ...sources.config, added_tokens_decoder: singleWord },
      }),
    named(/clip: added token "<\|startoftext\|>" is single_word/),
  );
  assert.throws(
    () => PromptTokenizer.build("clip", { ...sources, config: {}, specialTokensMap: {} }),
    named(/CLIP needs bos_token, eos_token and unk_token/),
  );
});
