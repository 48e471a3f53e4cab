// WanPipeline's prompt_clean (diffusers' pipelines/wan/pipeline_wan.py), applied to every prompt before the
// tokenizer: basic_clean (ftfy.fix_text when ftfy is installed, html.unescape twice, strip), then
// whitespace_clean (each whitespace run to one space, strip). The HTML decoding is the `entities` library's
// (the HTML5 rules Python's html.unescape follows, legacy semicolon-less names included).
//
// Skipped: ftfy.fix_text, a Python library with no TypeScript port. On ordinary prompts it changes nothing
// (tests/pure/wan_prompt_test.ts checks that against diffusers with ftfy installed). What it would change:
// mojibake ("cafÃ©" -> "café"), curly quotes to straight ones, C1 controls read as cp1252 (U+0085 -> "…"),
// control characters, U+FEFF and terminal escapes removed, a third HTML unescape, and fullwidth characters,
// ligatures and NFC, which umT5's tokenizer normalises (NFKC) the same way anyway: Wan's own Chinese negative
// prompt, whose fullwidth commas ftfy rewrites, gets the same token ids either way.
import { decodeHTML } from "entities";

// Unicode White_Space: what Python's `regex` matches with \s. JavaScript's \s differs (it adds U+FEFF and
// misses U+0085).
const WHITE_SPACE = String.raw`\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000`;
const WHITESPACE_RUN = new RegExp(`[${WHITE_SPACE}]+`, "gu");
// What str.strip() removes: str.isspace(), which also counts the separators U+001C..U+001F.
const STRIPPED = `[${WHITE_SPACE}\\u001c-\\u001f]+`;
const ENDS = new RegExp(`^${STRIPPED}|${STRIPPED}$`, "gu");

const NUMERIC_REFERENCE = /&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));?/g;

/**
 * Code points a numeric reference to which html.unescape drops (its _invalid_codepoints less those it maps
 * from cp1252); `entities` keeps them.
 */
function droppedByPython(codePoint: number): boolean {
  return (codePoint >= 0x1 && codePoint <= 0x8) || codePoint === 0xb ||
    (codePoint >= 0xe && codePoint <= 0x1f) || codePoint === 0x7f ||
    (codePoint >= 0xfdd0 && codePoint <= 0xfdef) ||
    (codePoint <= 0x10ffff && (codePoint & 0xfffe) === 0xfffe);
}

/** Python's html.unescape. */
export function htmlUnescape(text: string): string {
  // Removed before decoding, so a removal that joins two halves of a name ("&am&#1;p;") decodes it one
  // pass early; Python would leave that to its second pass.
  const kept = text.replace(
    NUMERIC_REFERENCE,
    (reference, hex?: string, decimal?: string) =>
      droppedByPython(hex === undefined ? Number(decimal) : parseInt(hex, 16)) ? "" : reference,
  );
  return decodeHTML(kept);
}

const strip = (text: string) => text.replace(ENDS, "");

/** prompt_clean without ftfy (see the file comment). */
export function cleanPrompt(prompt: string): string {
  const basic = strip(htmlUnescape(htmlUnescape(prompt)));
  return strip(basic.replace(WHITESPACE_RUN, " "));
}
