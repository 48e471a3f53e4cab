// FLUX's two prompt tokenizers, read from a diffusers pipeline directory: `tokenizer/` (CLIP, byte-level BPE
// from vocab.json + merges.txt) and `tokenizer_2/` (T5, SentencePiece unigram from tokenizer.json). The
// tokenization itself is Tokenizers.js (@huggingface/tokenizers); this module only builds the tokenizer.json
// object it takes, then truncates and pads the way FluxPipeline's calls do:
//   tokenizer(prompt, padding="max_length", max_length=77, truncation=True)
//   tokenizer_2(prompt, padding="max_length", max_length=max_sequence_length, truncation=True)
// Wan's `tokenizer/` (umT5's, read by transformers' T5Tokenizer too) is the T5 kind, called the same way.
//
// Which pipeline, and why not the file's: transformers 5's CLIPTokenizer and T5Tokenizer take only the
// vocabulary (and T5's precompiled normalisation map) from the files and build the normaliser,
// pre-tokeniser and special-token template themselves, whatever tokenizer.json says. FLUX's tokenizer_2
// was converted by an older transformers whose tokenizer.json pre-tokenises differently (a lone "▁" for a
// trailing space, or next to "</s>"), so handing that file over unchanged would disagree with transformers
// on such prompts. The pipelines below are the ones those two classes build.
import { Tokenizer } from "@huggingface/tokenizers";
import { exists, readJsonFile, readTextFile } from "../component_config.ts";
import { WeightsError } from "../safetensors.ts";

export type TokenizerKind = "clip" | "t5";

export interface EncodedPrompt {
  /** Exactly maxLength ids: specials, the (possibly truncated) prompt tokens, then padding. */
  ids: Uint32Array;
  /** The untruncated ids were longer than maxLength (FluxPipeline logs a warning then). */
  truncated: boolean;
  /** Untruncated length with the special tokens: FluxPipeline's padding="longest" call. */
  tokens: number;
}

/** The files of a tokenizer directory, parsed; `where` names the directory in errors. */
export interface TokenizerSources {
  where: string;
  /** tokenizer_config.json and special_tokens_map.json; either may be absent ({}). */
  config: Record<string, unknown>;
  specialTokensMap: Record<string, unknown>;
  /** CLIP: vocab.json and the lines of merges.txt, or else tokenizer.json. T5: tokenizer.json. */
  vocab?: Record<string, number>;
  merges?: string[];
  tokenizerJson?: Record<string, unknown>;
}

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

// CLIP's word splitter (OpenAI's, as transformers' CLIPTokenizer compiles it): its special tokens, English
// contractions, letter runs, single digits, and runs of anything else but whitespace. Whitespace is dropped.
const CLIP_SPLIT = String
  .raw`<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`;

// GPT-2's split, which transformers' ByteLevel pre-tokenizer applies (use_regex) after CLIP's.
const GPT2_SPLIT = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

// Tokenizers.js approximates SentencePiece's precompiled normalisation map by NFKC plus lists of removed
// and space-mapped characters. Compared code point by code point with the nmt_nfkc map (T5's kind) that
// sentencepiece 0.2 builds, it differs only in U+200D (zero width joiner: the map keeps it, the list makes it a space, which would split
// emoji sequences) and in characters newer than the map (U+A7F1). So ZWJ goes through as a noncharacter,
// which no vocabulary has (a prompt's own U+FDD0 comes out as ZWJ: unknown to the model either way).
const ZWJ = "\u200d";
const ZWJ_STAND_IN = "\ufdd0";

/** transformers 5's T5Tokenizer: Unigram(vocab, unk_id=2), T5's <unk> position. */
const T5_UNK_ID = 2;

export class PromptTokenizer {
  private constructor(
    readonly kind: TokenizerKind,
    private readonly tokenizer: Tokenizer,
    /** Special ids around the prompt's tokens: CLIP <|startoftext|> ... <|endoftext|>, T5 ... </s>. */
    private readonly prefix: number[],
    private readonly suffix: number[],
    readonly padId: number,
    /** tokenizer_config.json's model_max_length (77 for FLUX's CLIP: FluxPipeline's CLIP length). */
    readonly modelMaxLength: number | null,
  ) {}

  /** Reads `dir` (a pipeline's tokenizer/ for "clip", tokenizer_2/ for "t5"). Errors are WeightsErrors. */
  static async load(dir: string, kind: TokenizerKind): Promise<PromptTokenizer> {
    return PromptTokenizer.build(kind, await readTokenizerSources(dir, kind));
  }

  /** The same from already-parsed files (load() reads them; tests hand them in). */
  static build(kind: TokenizerKind, sources: TokenizerSources): PromptTokenizer {
    const json = kind === "clip" ? clipTokenizerJson(sources) : t5TokenizerJson(sources);
    const tokenizer = new Tokenizer(json, {});
    const id = (name: string, file: string) => {
      const token = specialToken(sources, name);
      const found = token === null ? undefined : tokenizer.token_to_id(token);
      if (found === undefined) {
        throw new WeightsError(
          `${sources.where}/${file}: ${name} ${JSON.stringify(token)} is not in the vocabulary`,
        );
      }
      return found;
    };
    const vocabFile = sources.tokenizerJson ? "tokenizer.json" : "vocab.json";
    const eos = id("eos_token", vocabFile);
    const prefix = kind === "clip" ? [id("bos_token", vocabFile)] : [];
    const pad = id("pad_token", "tokenizer_config.json");
    const max = sources.config.model_max_length;
    // transformers writes a huge sentinel (1e30) when a tokenizer has no limit.
    const modelMaxLength = typeof max === "number" && Number.isInteger(max) && max <= 1 << 20 ? max : null;
    for (const key of ["padding_side", "truncation_side"]) {
      const side = sources.config[key];
      if (side !== undefined && side !== "right") {
        throw new WeightsError(
          `${sources.where}/tokenizer_config.json: ${key} "${side}" is not supported (only "right")`,
        );
      }
    }
    return new PromptTokenizer(kind, tokenizer, prefix, [eos], pad, modelMaxLength);
  }

  /** FluxPipeline's call: special tokens, truncated to maxLength, padded to maxLength with the pad token. */
  encode(prompt: string, maxLength: number): EncodedPrompt {
    const specials = this.prefix.length + this.suffix.length;
    if (!Number.isInteger(maxLength) || maxLength < specials) {
      throw new RangeError(`maxLength ${maxLength} must be an integer of at least ${specials}`);
    }
    const body = this.tokenizer.encode(prompt, { add_special_tokens: false }).ids;
    // As transformers truncates: the prompt's tokens lose their tail so that the specials still fit.
    const kept = Math.min(body.length, maxLength - specials);
    const ids = new Uint32Array(maxLength).fill(this.padId);
    ids.set(this.prefix, 0);
    ids.set(body.slice(0, kept), this.prefix.length);
    ids.set(this.suffix, this.prefix.length + kept);
    const tokens = body.length + specials;
    return { ids, truncated: tokens > maxLength, tokens };
  }
}

/** The files of a tokenizer directory that `kind` needs, parsed. */
export async function readTokenizerSources(dir: string, kind: TokenizerKind): Promise<TokenizerSources> {
  try {
    if (!(await Deno.stat(dir)).isDirectory) throw new WeightsError(`${dir}: not a directory`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new WeightsError(`${dir}: tokenizer directory not found`);
    throw e;
  }
  const sources: TokenizerSources = {
    where: dir,
    config: await readOptionalObject(`${dir}/tokenizer_config.json`),
    specialTokensMap: await readOptionalObject(`${dir}/special_tokens_map.json`),
  };
  const has = (name: string) => exists(`${dir}/${name}`);
  if (kind === "clip" && (await has("vocab.json") || !(await has("tokenizer.json")))) {
    // FLUX's layout. With neither this nor tokenizer.json, the error names vocab.json.
    sources.vocab = await readObject(`${dir}/vocab.json`) as Record<string, number>;
    sources.merges = await readMerges(`${dir}/merges.txt`);
  } else if (kind === "t5" && !(await has("tokenizer.json")) && await has("spiece.model")) {
    // Tokenizers.js reads no SentencePiece protobuf, and a protobuf parser is not worth carrying here.
    throw new WeightsError(
      `${dir}/tokenizer.json: file not found; this directory has only spiece.model, which must be ` +
        `converted first: python -c "from transformers import T5TokenizerFast as T; ` +
        `T.from_pretrained('${dir}').save_pretrained('${dir}')" (needs sentencepiece and protobuf)`,
    );
  } else {
    sources.tokenizerJson = await readObject(`${dir}/tokenizer.json`);
  }
  return sources;
}

/** The tokenizer.json that transformers' CLIPTokenizer builds from vocab.json + merges.txt. */
function clipTokenizerJson(sources: TokenizerSources): Record<string, unknown> {
  let vocab = sources.vocab;
  let merges: [string, string][];
  if (vocab && sources.merges) {
    merges = sources.merges.map((line, i) => {
      const pair = line.split(" ");
      if (pair.length !== 2) {
        throw new WeightsError(
          `${sources.where}/merges.txt: merge ${i + 1} is not two symbols: ${JSON.stringify(line)}`,
        );
      }
      return pair as [string, string];
    });
  } else {
    // A CLIP directory with only tokenizer.json: transformers takes just its vocabulary and merges too.
    const model = bpeModel(sources);
    vocab = model.vocab;
    merges = model.merges;
  }
  const unk = specialToken(sources, "unk_token");
  const bos = specialToken(sources, "bos_token");
  const eos = specialToken(sources, "eos_token");
  if (unk === null || bos === null || eos === null) {
    throw new WeightsError(
      `${sources.where}/tokenizer_config.json: CLIP needs bos_token, eos_token and unk_token ` +
        `(here or in special_tokens_map.json)`,
    );
  }
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens(sources, vocab, ["bos_token", "eos_token", "unk_token", "pad_token"]),
    // Unicode NFC, every whitespace run to one space, lower case. Σ -> σ first: JavaScript's toLowerCase
    // turns a word-final Σ into ς, the Rust library lowercases character by character (σ).
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "NFC" },
        { type: "Replace", pattern: { Regex: String.raw`\s+` }, content: " " },
        { type: "Replace", pattern: { String: "Σ" }, content: "σ" },
        { type: "Lowercase" },
      ],
    },
    // Words by CLIP's regex; then GPT-2's byte-level split of each (a no-op on CLIP's words except for
    // the text of a special token that was not matched whole); then each piece's UTF-8 bytes as GPT-2's
    // printable byte characters. transformers writes the middle step as ByteLevel's use_regex, but
    // Tokenizers.js runs that regex with JavaScript's \s (U+FEFF is whitespace there, not in Oniguruma);
    // as a Split its \s is translated to Oniguruma's meaning.
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: CLIP_SPLIT }, behavior: "Removed", invert: true },
        { type: "Split", pattern: { Regex: GPT2_SPLIT }, behavior: "Isolated", invert: false },
        { ...byteLevel, use_regex: false },
      ],
    },
    // BPE on each word, whose last symbol carries "</w>"; unknown symbols (none: every byte is in the
    // vocabulary) would become unk one by one.
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
    // <|startoftext|> prompt <|endoftext|>.
    post_processor: {
      type: "RobertaProcessing",
      sep: [eos, vocab[eos]],
      cls: [bos, vocab[bos]],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: byteLevel,
  };
}

/** tokenizer.json's unigram vocabulary and normalisation map, in transformers' T5Tokenizer pipeline. */
function t5TokenizerJson(sources: TokenizerSources): Record<string, unknown> {
  const file = `${sources.where}/tokenizer.json`;
  const json = sources.tokenizerJson!;
  const model = json.model as { type?: unknown; vocab?: unknown } | undefined;
  if (model?.type !== "Unigram" || !Array.isArray(model.vocab)) {
    throw new WeightsError(
      `${file}: model is ${JSON.stringify(model?.type)}, T5 needs a Unigram model with a vocab list`,
    );
  }
  const vocab = Object.fromEntries((model.vocab as [string, number][]).map(([piece], i) => [piece, i]));
  const eos = specialToken(sources, "eos_token");
  if (eos === null) throw new WeightsError(`${sources.where}/tokenizer_config.json: T5 needs an eos_token`);
  const metaspace = { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens(sources, vocab, ["eos_token", "unk_token", "pad_token"]),
    // SentencePiece's precompiled normalisation (NFKC and friends) when the file has one; the rest of a
    // normaliser sequence (older conversions add a space-collapsing Replace) is dropped, as transformers
    // drops it.
    normalizer: precompiledNormalizer(json.normalizer),
    // Whitespace-separated words, each with "▁" in front. The split is WhitespaceSplit's (Unicode
    // White_Space), written as a Split because Tokenizers.js's WhitespaceSplit uses JavaScript's \s, which
    // misses U+0085 and adds U+FEFF.
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [{
        type: "Split",
        pattern: { Regex: String.raw`\s+` },
        behavior: "Removed",
        invert: false,
      }, metaspace],
    },
    // The vocabulary alone, in the model transformers 5's T5Tokenizer builds around it: a piece outside the
    // vocabulary gets id 2 and there is no byte fallback, whatever the file says. umT5's file (Wan's
    // tokenizer/, converted by transformers 4) has unk_id 3 and byte_fallback true; its id 2 is <s>, which
    // transformers 5 then gives an unknown character.
    model: { type: "Unigram", vocab: model.vocab, unk_id: T5_UNK_ID, byte_fallback: false },
    // prompt </s>.
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: eos, type_id: 0 } }],
      pair: [],
      special_tokens: { [eos]: { id: eos, ids: [vocab[eos]], tokens: [eos] } },
    },
    decoder: metaspace,
  };
}

function bpeModel(sources: TokenizerSources): { vocab: Record<string, number>; merges: [string, string][] } {
  const model = sources.tokenizerJson!.model as
    | { type?: unknown; vocab?: unknown; merges?: unknown }
    | undefined;
  if (model?.type !== "BPE" || typeof model.vocab !== "object" || !Array.isArray(model.merges)) {
    throw new WeightsError(
      `${sources.where}/tokenizer.json: model is ${
        JSON.stringify(model?.type)
      }, CLIP needs a BPE model with vocab and merges`,
    );
  }
  // Both spellings of a merge occur: "a b" (older files) and ["a", "b"].
  const merges = model.merges.map((m) => (typeof m === "string" ? m.split(" ") : m) as [string, string]);
  return { vocab: model.vocab as Record<string, number>, merges };
}

function precompiledNormalizer(normalizer: unknown): unknown {
  const n = normalizer as { type?: string; normalizers?: unknown[] } | null | undefined;
  const precompiled = n?.type === "Sequence"
    ? (n.normalizers ?? []).find((x) => (x as { type?: string })?.type === "Precompiled")
    : n?.type === "Precompiled"
    ? n
    : undefined;
  if (!precompiled) return null;
  return {
    type: "Sequence",
    normalizers: [
      { type: "Replace", pattern: { String: ZWJ }, content: ZWJ_STAND_IN },
      precompiled,
      { type: "Replace", pattern: { String: ZWJ_STAND_IN }, content: ZWJ },
    ],
  };
}

/**
 * The tokens matched whole before tokenisation. As in transformers: tokenizer_config.json's
 * added_tokens_decoder when it has one (with its flags), else tokenizer.json's added_tokens, else the
 * named special tokens, matched before normalisation.
 */
function addedTokens(
  sources: TokenizerSources,
  vocab: Record<string, number>,
  names: string[],
): AddedTokenJson[] {
  const tokens = listAddedTokens(sources, vocab, names);
  const whole = tokens.find((t) => t.single_word);
  if (whole) {
    // Tokenizers.js ignores single_word; matching such a token inside words would give other ids.
    throw new WeightsError(
      `${sources.where}: added token ${JSON.stringify(whole.content)} is single_word, ` +
        `which Tokenizers.js does not support`,
    );
  }
  return tokens;
}

function listAddedTokens(
  sources: TokenizerSources,
  vocab: Record<string, number>,
  names: string[],
): AddedTokenJson[] {
  const decoder = sources.config.added_tokens_decoder as Record<string, Record<string, unknown>> | undefined;
  if (decoder && typeof decoder === "object") {
    return Object.entries(decoder).map(([id, t]) => ({
      id: Number(id),
      content: String(t.content),
      single_word: t.single_word === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      normalized: t.normalized === true,
      special: t.special === true,
    }));
  }
  const fromJson = sources.tokenizerJson?.added_tokens;
  if (Array.isArray(fromJson)) return fromJson as AddedTokenJson[];
  const contents = new Set(names.map((name) => specialToken(sources, name)).filter((t) => t !== null));
  return [...contents].filter((t) => t in vocab).map((content) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
}

/** A special token's text from tokenizer_config.json, else special_tokens_map.json: a string or {content}. */
function specialToken(sources: TokenizerSources, name: string): string | null {
  for (const source of [sources.config, sources.specialTokensMap]) {
    const value = source[name];
    if (typeof value === "string") return value;
    if (value && typeof value === "object" && typeof (value as { content?: unknown }).content === "string") {
      return (value as { content: string }).content;
    }
  }
  return null;
}

async function readObject(path: string): Promise<Record<string, unknown>> {
  const value = await readJsonFile(path);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new WeightsError(`${path}: not a JSON object`);
  }
  return value as Record<string, unknown>;
}

async function readOptionalObject(path: string): Promise<Record<string, unknown>> {
  return await exists(path) ? await readObject(path) : {};
}

/** merges.txt: one "a b" pair a line, in rank order, after an optional "#version" header. */
async function readMerges(path: string): Promise<string[]> {
  const text = await readTextFile(path);
  return text.split(/\r?\n/).filter((line, i) => line !== "" && !(i === 0 && line.startsWith("#version")));
}
