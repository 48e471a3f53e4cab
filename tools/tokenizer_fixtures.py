"""Reference token ids from transformers for FLUX's two tokenizers, for tests/pure/tokenizer_test.ts.

Writes under tests/fixtures/tokenizers/:
  clip/          a CLIPTokenizer directory in FLUX's `tokenizer/` layout (vocab.json, merges.txt,
                 tokenizer_config.json, special_tokens_map.json; no tokenizer.json) built from the real
                 OpenAI CLIP BPE table that the open_clip_torch wheel ships (bpe_simple_vocab_16e6.txt.gz)
  t5/            a T5 tokenizer directory in FLUX's `tokenizer_2/` layout (spiece.model, tokenizer.json,
                 tokenizer_config.json, special_tokens_map.json) around a small unigram SentencePiece model
                 trained here (vocab 1000, then T5's 100 <extra_id_N> sentinels on top: 1100 ids)
  prompts.json   for each prompt: the ids transformers gives as FluxPipeline calls the tokenizers (CLIP at
                 max_length 77, T5 at 256 and 512), the truncation flag FluxPipeline would warn on and the
                 untruncated length (FluxPipeline's padding="longest" call); and two variants: clip/ with
                 the bare tokenizer_config.json transformers 5 writes (ids kept where they differ), and
                 t5/tokenizer.json in an older conversion's shape (asserted to give the same ids)
  broken/, spiece_only/  an unparsable vocab.json and tokenizer.json; a spiece.model with no tokenizer.json

The references are computed by loading the written directories back with from_pretrained, i.e. from
exactly the files a test reads, as FluxPipeline.from_pretrained would.

The output is the same run to run. Run (the venv of tools/diffusers_fixtures.py, plus open_clip_torch for
its bpe_simple_vocab_16e6.txt.gz only, and protobuf, which transformers needs to convert spiece.model):
  /work/ref-venv/bin/pip install open_clip_torch protobuf
  /work/ref-venv/bin/python tools/tokenizer_fixtures.py
"""

import gzip
import importlib.util
import json
import os
import shutil
import tempfile

import sentencepiece
import tokenizers
import transformers
from transformers import CLIPTokenizer, T5TokenizerFast

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tokenizers")
CLIP_MAX_LENGTH = 77
T5_MAX_LENGTHS = (256, 512)  # FLUX.1-schnell, FLUX.1-dev
T5_BASE_VOCAB = 1000
T5_EXTRA_IDS = 100  # as google/t5-v1_1-xxl (FLUX's text_encoder_2) has them


def byte_symbols():
    """GPT-2/CLIP's reversible byte -> printable character table: printable Latin-1 bytes stand for
    themselves, the other 68 bytes are moved to U+0100 onwards, in byte order."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {b: chr(b) for b in keep}
    moved = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(0x100 + moved)
            moved += 1
    return [table[b] for b in range(256)]


def write_clip(out_dir):
    pkg = importlib.util.find_spec("open_clip").submodule_search_locations[0]
    with gzip.open(os.path.join(pkg, "bpe_simple_vocab_16e6.txt.gz")) as f:
        lines = f.read().decode("utf-8").split("\n")
    # Line 0 is a version header. CLIP uses the first 49152 - 256 - 2 merges, so that 256 byte symbols,
    # 256 end-of-word byte symbols, the merges and 2 specials make 49408 ids.
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    assert all(len(m) == 2 for m in merges)
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == 49408, len(vocab)

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
        # FLUX's CLIP settings: pad with <|endoftext|> (the eos), 77 positions.
        tok = CLIPTokenizer.from_pretrained(tmp, pad_token="<|endoftext|>", model_max_length=CLIP_MAX_LENGTH)
        tok.save_pretrained(out_dir)
        # FLUX's tokenizer/ carries vocab.json + merges.txt and no tokenizer.json; keep that layout whatever
        # this transformers version chose to save, so that the test exercises the vocab/merges path.
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(os.path.join(tmp, name), os.path.join(out_dir, name))
    tokenizer_json = os.path.join(out_dir, "tokenizer.json")
    if os.path.exists(tokenizer_json):
        os.remove(tokenizer_json)
    with open(os.path.join(out_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        bare_config = json.load(f)
    # transformers 5 saves a bare config; FLUX's (written by an older transformers) lists the added tokens
    # with their flags (<|startoftext|> is matched after normalisation, <|endoftext|> before). Write that
    # shape, since it is what a FLUX directory has; the references below are computed from it.
    def added(content, normalized):
        return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False,
                "single_word": False, "special": True}
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {"49406": added("<|startoftext|>", True),
                                 "49407": added("<|endoftext|>", False)},
        "bos_token": "<|startoftext|>", "clean_up_tokenization_spaces": True, "do_lower_case": True,
        "eos_token": "<|endoftext|>", "errors": "replace", "model_max_length": CLIP_MAX_LENGTH,
        "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    # Both spellings of a special token occur in special_tokens_map.json files: an object and a string.
    special = {name: {k: v for k, v in added(config[name], name == "bos_token").items() if k != "special"}
               for name in ("bos_token", "eos_token", "unk_token")}
    special["pad_token"] = config["pad_token"]
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
        f.write("\n")
    return bare_config


def write_special_tokens_map(out_dir, tok):
    """FLUX's directories have a special_tokens_map.json; transformers 5 no longer writes one."""
    path = os.path.join(out_dir, "special_tokens_map.json")
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tok.special_tokens_map, f, indent=2, ensure_ascii=False)
            f.write("\n")


# A few thousand deterministic lines: enough distinct text for a 1000-piece unigram model. Accented words
# are common enough to get pieces; CJK less so; the emoji are rare, so most of them fall below the
# character coverage and come out as <unk>, as they do with T5's real vocabulary.
ANIMALS = ["cat", "dog", "fox", "owl", "horse", "tiger", "zebra", "eagle", "rabbit", "dolphin", "penguin",
           "elephant", "giraffe", "octopus", "hedgehog", "butterfly", "kangaroo", "squirrel"]
PHOTO = ["portrait", "macro", "bokeh", "shallow depth of field", "golden hour", "long exposure",
         "wide angle", "telephoto", "35mm film", "50mm lens", "f/1.8", "f/2.8", "ISO 400", "ISO 3200",
         "1/250s shutter", "HDR", "black and white", "high contrast", "soft light", "studio lighting",
         "cinematic", "tilt-shift", "8k", "4K UHD", "RAW photo"]
PLACES = ["in a café", "on a naïve painting", "in Tokyo, 日本", "in 東京", "by the sea", "in the snow",
          "at night", "under neon lights", "in a forest", "on a mountain", "in Paris", "at the zoo"]
EXTRAS = ["", "!", "?", "...", ";", ":", " (detailed)", " [sharp]", " {vivid}", ' "award winning"',
          " — trending", " - 2024", " #1", " 100%", " & more", " 3.14", " 1,000,000", " x2", " 日本",
          " crème brûlée", " über", " São Paulo", " Zürich"]
RARE = ["🐱", "📷", "✨", "🌸", "🐶"]
COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "violet", "crimson", "turquoise", "magenta",
          "silver", "golden", "charcoal", "ivory", "emerald", "sapphire"]
ACTIONS = ["sleeping", "running", "jumping", "swimming", "flying", "reading", "dancing", "climbing",
           "painting", "wandering", "watching", "hiding", "eating breakfast", "playing chess"]
STYLES = ["watercolor", "oil painting", "pencil sketch", "digital art", "photorealistic", "impressionist",
          "surrealism", "minimalist", "baroque", "cyberpunk", "steampunk", "ukiyo-e", "art nouveau",
          "low poly", "isometric", "anime", "claymation", "vaporwave"]
SCENES = ["lighthouse", "waterfall", "cathedral", "marketplace", "bakery", "library", "greenhouse", "harbor",
          "volcano", "glacier", "desert canyon", "bamboo grove", "rooftop garden", "subway station",
          "abandoned factory", "medieval castle", "floating island", "coral reef", "sunflower field",
          "vineyard", "observatory", "train platform", "thunderstorm", "aurora borealis", "rainbow",
          "cherry blossoms", "autumn leaves", "misty valley", "frozen lake", "sandcastle", "windmill"]
MOODS = ["serene", "melancholic", "whimsical", "dramatic", "mysterious", "joyful", "eerie", "nostalgic",
         "peaceful", "chaotic", "romantic", "gloomy", "luminous", "ethereal", "gritty", "cozy", "majestic",
         "playful", "somber", "vibrant", "tranquil", "ominous", "dreamy", "rustic", "futuristic", "ancient"]


def t5_corpus():
    lines = []
    for i, animal in enumerate(ANIMALS):
        for j, photo in enumerate(PHOTO):
            place = PLACES[(i + j) % len(PLACES)]
            extra = EXTRAS[(i * 7 + j * 3) % len(EXTRAS)]
            lines.append(f"a {photo} photo of a {animal} {place}{extra}")
            lines.append(f"{animal.upper()} {j} {i * j} {photo.title()}, {place}{extra}")
            lines.append(f"The {animal}'s {photo} shot #{i * 100 + j}: {i}.{j} stops, {j * 17 % 97} degrees")
    for i, color in enumerate(COLORS):
        for j, action in enumerate(ACTIONS):
            style = STYLES[(i * 5 + j) % len(STYLES)]
            animal = ANIMALS[(i + j * 3) % len(ANIMALS)]
            photo = PHOTO[(i + j) % len(PHOTO)]
            lines.append(f"{style} of a {color} {animal} {action}, highly detailed, {photo}")
            lines.append(f"Wonderful {style.capitalize()}: {action} {color}-tinted {animal}s; masterpiece")
    for i, scene in enumerate(SCENES):
        for j, mood in enumerate(MOODS):
            style, color = STYLES[(i + j) % len(STYLES)], COLORS[(i * j) % len(COLORS)]
            lines.append(f"{mood} {scene}, {style}, {color} sky")
    for n in range(200):
        lines.append(" ".join(str(n * k) for k in range(1, 8)) + f" digits {n % 10} and {n:04d}")
    for k, rare in enumerate(RARE):  # only a handful of occurrences each
        lines.append(f"a {ANIMALS[k]} {rare} sticker")
    return lines


def train_t5_tokenizer(out_dir, corpus, vocab_size, max_length, **trainer_options):
    """A unigram SentencePiece model trained on `corpus` with T5's ids (<pad>=0, </s>=1, <unk>=2, no <s>;
    default nmt_nfkc normalisation like T5's model), T5's 100 sentinels on top, saved in FLUX's tokenizer_2/
    layout (spiece.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json). Returns the
    tokenizer."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "corpus.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(corpus) + "\n")
        # The model records its input and output paths: relative ones keep the file the same run to run.
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            sentencepiece.SentencePieceTrainer.train(
                input="corpus.txt", model_prefix="spiece", model_type="unigram",
                vocab_size=vocab_size, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", num_threads=1, minloglevel=2,
                **trainer_options)
        finally:
            os.chdir(cwd)
        spm_dir = os.path.join(tmp, "spm")
        os.mkdir(spm_dir)
        shutil.copyfile(os.path.join(tmp, "spiece.model"), os.path.join(spm_dir, "spiece.model"))
        # A directory with only spiece.model: transformers converts it (SentencePiece -> tokenizers) on load.
        tok = T5TokenizerFast.from_pretrained(spm_dir, extra_ids=T5_EXTRA_IDS, model_max_length=max_length)
        tok.save_pretrained(out_dir)
        if not os.path.exists(os.path.join(out_dir, "spiece.model")):
            shutil.copyfile(os.path.join(spm_dir, "spiece.model"), os.path.join(out_dir, "spiece.model"))
    write_special_tokens_map(out_dir, tok)
    return tok


def write_t5(out_dir):
    train_t5_tokenizer(out_dir, t5_corpus(), T5_BASE_VOCAB, 512)


def write_broken(root):
    """Directories for the error tests (which run without write permission)."""
    broken = os.path.join(root, "broken")
    os.makedirs(broken)
    for name in ("vocab.json", "tokenizer.json"):
        with open(os.path.join(broken, name), "w") as f:
            f.write('{"truncated": \n')
    with open(os.path.join(broken, "merges.txt"), "w") as f:
        f.write("#version: 0.2\na b\n")
    # Only an existence check reads it: the loader refuses spiece.model without tokenizer.json.
    spiece_only = os.path.join(root, "spiece_only")
    os.makedirs(spiece_only)
    with open(os.path.join(spiece_only, "spiece.model"), "wb") as f:
        f.write(b"placeholder, not a SentencePiece model")


# FLUX's tokenizer_2/tokenizer.json was converted by an older transformers: a space-collapsing Replace after
# the Precompiled normaliser and a bare Metaspace pre-tokeniser (no WhitespaceSplit). transformers 5 builds
# its own pipeline around the vocabulary, so the ids must not change; the test checks the loader agrees.
LEGACY_T5_EXTRA_NORMALIZERS = [{"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]
LEGACY_T5_PRE_TOKENIZER = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True,
                           "prepend_scheme": "always", "split": True}


def legacy_t5_json(tokenizer_json):
    legacy = dict(tokenizer_json)
    legacy["normalizer"] = {"type": "Sequence",
                            "normalizers": [tokenizer_json["normalizer"]] + LEGACY_T5_EXTRA_NORMALIZERS}
    legacy["pre_tokenizer"] = LEGACY_T5_PRE_TOKENIZER
    return legacy


def long_prompt(words):
    parts = []
    for i in range(words):
        parts.append(f"{ANIMALS[i % len(ANIMALS)]} {PHOTO[i % len(PHOTO)]}")
    return ", ".join(parts)


def prompts(clip, t5):
    table = [
        ("simple", "a photo of a cat"),
        ("mixed case and punctuation", "A Photo Of A CAT, 50mm f/1.8 — ISO 400!"),
        ("empty", ""),
        ("only spaces", "   "),
        ("leading and trailing spaces", "   leading and trailing spaces   "),
        ("tabs newlines repeated spaces", "tabs\tand\nnewlines\r\n  and   repeated    spaces\t\t end"),
        ("digits and numbers", "digits 0123456789 and numbers 3.14159 1,000,000 2024-05-17 x86_64"),
        ("accents precomposed", "café naïve résumé Ångström crème brûlée São Paulo Zürich"),
        ("accents combining", "cafe\u0301 nai\u0308ve re\u0301sume\u0301"),
        ("cjk", "日本の東京で撮影した写真, 日本"),
        ("hangul arabic devanagari", "한국어 사진 العربية हिन्दी"),
        ("emoji", "emoji 🐱🐶📷✨ and a zwj sequence 👩\u200d💻 and 🙂"),
        ("single emoji", "🙂"),
        ("contractions", "it's they're we've I'm you'll he'd don't IT'S"),
        ("curly apostrophe", "it’s the cat’s “best” photo"),
        ("clip special tokens literal", "<|endoftext|> inside text <|startoftext|>"),
        ("clip special tokens upper case", "<|STARTOFTEXT|> and <|ENDOFTEXT|>"),
        ("t5 special tokens literal", "<extra_id_0> sentinel </s> and <pad> <unk> literal"),
        ("greek final sigma", "ΟΔΟΣ ΣΟΦΟΣ Σ"),
        ("compatibility characters", "İstanbul ﬁne ＦＵＬＬＷＩＤＴＨ ① ½ ™ x² ～"),
        ("bom between punctuation", "wow!\ufeff! ok?\ufeff"),
        ("trailing space and eos literal", "a cat </s> "),
        ("unusual whitespace", "zero\u200bwidth bom\ufeffhere nel\u0085here nbsp\u00a0here ideo\u3000here"),
        ("control characters", "bell\x07 escape\x1b[0m nul\x00 del\x7f end"),
        ("punctuation runs", "!!!???...,,,;;;:::'''\"\"\" --- ((()))"),
        ("code-like", "snake_case kebab-case CamelCase https://example.com/a?b=c&d=e#f <b>bold</b>"),
        ("long word", "supercalifragilisticexpialidocious" * 8),
        ("clip boundary 77", " ".join(["cat"] * 75)),
        ("clip boundary 78", " ".join(["cat"] * 76)),
        ("over 77 clip", long_prompt(30)),
        ("over 256 t5", long_prompt(80)),
        ("over 512 t5", long_prompt(140)),
    ]
    # T5 boundaries: the largest repeat whose untruncated ids (with </s>) fit exactly / just exceed 256.
    n = 1
    while len(t5(" ".join(["dog"] * (n + 1)))["input_ids"]) <= 256:
        n += 1
    table.append(("t5 boundary fits 256", " ".join(["dog"] * n)))
    table.append(("t5 boundary exceeds 256", " ".join(["dog"] * (n + 1))))
    return table


def reference(tok, prompt, max_length):
    """Exactly FluxPipeline's two calls, and its warning condition."""
    ids = tok(prompt, padding="max_length", max_length=max_length, truncation=True,
              return_overflowing_tokens=False, return_length=False)["input_ids"]
    untruncated = tok(prompt, padding="longest")["input_ids"]
    truncated = len(untruncated) >= len(ids) and untruncated != ids
    assert len(ids) == max_length
    return {"ids": ids, "truncated": truncated, "tokens": len(untruncated)}


def main():
    versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "sentencepiece": sentencepiece.__version__}
    print("running with", ", ".join(f"{k} {v}" for k, v in versions.items()))
    if os.path.exists(ROOT):
        shutil.rmtree(ROOT)
    clip_dir = os.path.join(ROOT, "clip")
    t5_dir = os.path.join(ROOT, "t5")
    bare_clip_config = write_clip(clip_dir)
    write_t5(t5_dir)
    write_broken(ROOT)

    # Load back from the written files, as FluxPipeline.from_pretrained would.
    clip = CLIPTokenizer.from_pretrained(clip_dir)
    t5 = T5TokenizerFast.from_pretrained(t5_dir)
    assert clip.pad_token == "<|endoftext|>" and clip.model_max_length == CLIP_MAX_LENGTH
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id) == (0, 1, 2)
    assert len(t5) == T5_BASE_VOCAB + T5_EXTRA_IDS, len(t5)
    with tempfile.TemporaryDirectory() as tmp:
        # The same CLIP vocabulary with the config transformers 5 itself writes (no added_tokens_decoder).
        bare_dir = os.path.join(tmp, "clip_bare")
        os.mkdir(bare_dir)
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(os.path.join(clip_dir, name), os.path.join(bare_dir, name))
        with open(os.path.join(bare_dir, "tokenizer_config.json"), "w") as f:
            json.dump(bare_clip_config, f)
        clip_bare = CLIPTokenizer.from_pretrained(bare_dir)
        # The T5 vocabulary in an old-style tokenizer.json.
        legacy_dir = os.path.join(tmp, "t5_legacy")
        shutil.copytree(t5_dir, legacy_dir)
        os.remove(os.path.join(legacy_dir, "spiece.model"))
        with open(os.path.join(t5_dir, "tokenizer.json"), encoding="utf-8") as f:
            legacy = legacy_t5_json(json.load(f))
        with open(os.path.join(legacy_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(legacy, f)
        t5_legacy = T5TokenizerFast.from_pretrained(legacy_dir)

        cases = []
        for name, prompt in prompts(clip, t5):
            case = {"name": name, "prompt": prompt, "clip": reference(clip, prompt, CLIP_MAX_LENGTH)}
            bare = reference(clip_bare, prompt, CLIP_MAX_LENGTH)
            if bare != case["clip"]:
                case["clip_bare_config"] = bare
            for m in T5_MAX_LENGTHS:
                case[f"t5_{m}"] = reference(t5, prompt, m)
                assert reference(t5_legacy, prompt, m) == case[f"t5_{m}"], (name, m)
            cases.append(case)
    variants = {
        "clip_bare_config": {
            "about": "clip/ with the tokenizer_config.json transformers 5 writes; cases where the ids differ "
                     "carry them as clip_bare_config",
            "tokenizer_config": bare_clip_config,
        },
        "t5_legacy_json": {
            "about": "t5/tokenizer.json with an older conversion's pipeline: ids unchanged",
            "extra_normalizers": LEGACY_T5_EXTRA_NORMALIZERS,
            "pre_tokenizer": LEGACY_T5_PRE_TOKENIZER,
        },
    }
    with open(os.path.join(ROOT, "prompts.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": versions, "variants": variants, "cases": cases}, f, ensure_ascii=False,
                  separators=(",", ":"))
        f.write("\n")

    for case in cases:
        mark = {k: "*" if case[k]["truncated"] else " " for k in ("clip", "t5_256")}
        print(f"  {case['name']:32s} clip {case['clip']['tokens']:4d}{mark['clip']}"
              f" t5 {case['t5_256']['tokens']:4d}{mark['t5_256']}"
              f"{'  (bare config differs)' if 'clip_bare_config' in case else ''}")
    for d in (clip_dir, t5_dir):
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            print(f"  {os.path.relpath(path, ROOT):32s} {os.path.getsize(path):9d} B")
    print(f"  {'prompts.json':32s} {os.path.getsize(os.path.join(ROOT, 'prompts.json')):9d} B")


if __name__ == "__main__":
    main()
