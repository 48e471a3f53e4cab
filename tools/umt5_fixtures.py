"""Reference outputs of transformers' UMT5EncoderModel and of WanPipeline's prompt encoding (diffusers) at tiny
random configs, for tests/model/umt5_test.ts and tests/pure/wan_prompt_test.ts.

Writes under tests/fixtures/wan/ (only these paths; the rest of the folder belongs to other scripts):
  umt5-a/, umt5-b/              UMT5EncoderModel directories as Wan2.1's text_encoder/ holds them (config.json
                                with Wan's extra keys: scalable_attention, tie_word_embeddings false, ...;
                                model.safetensors). umt5-a (F32, d_model 24 = the tiny Wan transformer's text_dim,
                                Wan's 32 buckets / max distance 128) has the vocabulary of umt5-tokenizer/;
                                umt5-b is BF16 with an odd d_model and 8 buckets / max distance 20, so exact,
                                logarithmic and clamped buckets all occur.
  umt5-<name>-forward.safetensors  input_ids and attention_mask [3, L] (one full row, two right-padded ones),
                                every stage (after the embeddings, after each layer, the final norm),
                                last_hidden_state, and each layer's own position bias
                                ("position_bias.<k>", [1, heads, L, L], compute_bias without the mask)
  umt5-tokenizer/               a tokenizer directory in the shape of Wan2.1's tokenizer/ (google/umt5-xxl's):
                                a unigram SentencePiece vocabulary trained here with umt5's layout (<pad>=0,
                                </s>=1, <s>=2, <unk>=3, byte fallback, 300 <extra_id_N> on top), its
                                tokenizer.json in the shape transformers 4 converted it (the unk id and byte
                                fallback of the SentencePiece model), tokenizer_config.json and
                                special_tokens_map.json in the shape transformers 4 wrote. No spiece.model: every
                                reader here takes tokenizer.json, and the model file would double the size.
  umt5-prompts.json             per prompt: prompt_clean's output as the pipeline runs it here (ftfy installed)
                                and with ftfy switched off, whether ftfy changed it, and the ids and attention
                                mask length of WanPipeline's tokenizer call at max_sequence_length 16 and 512
                                (plus the untruncated length with </s>); where ftfy changes the text, also
                                those of the text without ftfy
  umt5-prompt-embeds.safetensors  WanPipeline.encode_prompt's prompt_embeds and negative_prompt_embeds for
                                the prompts named in the header, at max_sequence_length 24 (two prompts
                                truncated) and 64, from a WanPipeline of umt5-tokenizer/ + umt5-a/ with
                                transformer, vae and scheduler None

Every parameter is seeded noise (tools/text_encoder_fixtures.py's randomize: N(0, 1) token table and relative
biases, N(0, 1/fan_in) matrices, 1 + noise norm scales); umt5-b is saved in BF16 and reloaded in float32, so its
reference is computed in float32 from the stored weights. The tokenizer and pipeline references are computed by
loading the written directories back (AutoTokenizer, UMT5EncoderModel.from_pretrained), as WanPipeline would.

Run (../shared/design/references.md has the set-up; ftfy is in the venv, as Wan's docs ask):
  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/umt5_fixtures.py
"""

import argparse
import html
import json
import os
import shutil
import tempfile

import safetensors
import sentencepiece
import tokenizers
import torch
import transformers
import diffusers
import diffusers.pipelines.wan.pipeline_wan as pipeline_wan
from diffusers import WanPipeline
from safetensors.torch import save_file
from transformers import AutoTokenizer, T5TokenizerFast, UMT5Config, UMT5EncoderModel

from diffusers_fixtures import DIFFUSERS_COMMIT
from text_encoder_fixtures import contiguous, randomize, stored
from tokenizer_fixtures import t5_corpus

EXTRA_IDS = 300  # google/umt5-xxl's sentinels
BASE_VOCAB = 600  # 4 specials, 256 byte pieces, 340 learned pieces
TOKENIZER_VOCAB = BASE_VOCAB + EXTRA_IDS
MAX_LENGTHS = (16, 512)  # a small limit that truncates; WanPipeline.__call__'s default
EMBED_LENGTHS = (24, 64)
# Keys Wan2.1's text_encoder/config.json carries beyond what UMT5Config saves (transformers ignores them).
WAN_CONFIG_KEYS = dict(scalable_attention=True, tie_word_embeddings=False, is_encoder_decoder=True,
                       output_past=True, tokenizer_class="T5Tokenizer", dense_act_fn="gelu_new", is_gated_act=True)

CONFIGS = {
    "umt5-a": dict(config=dict(vocab_size=TOKENIZER_VOCAB + 12, d_model=24, d_kv=16, d_ff=40, num_layers=3,
                               num_heads=3, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                               layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu"),
                   dtype=torch.float32, lengths=(26, 17, 5)),
    "umt5-b": dict(config=dict(vocab_size=173, d_model=37, d_kv=12, d_ff=53, num_layers=2, num_heads=4,
                               relative_attention_num_buckets=8, relative_attention_max_distance=20,
                               layer_norm_epsilon=1e-5, feed_forward_proj="gated-gelu"),
                   dtype=torch.bfloat16, lengths=(29, 21, 9)),
}

WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的")
PROMPTS = [
    ("simple", "a cat walking on the grass"),
    ("whitespace runs", "  a   red\tfox \t jumping\n\nover  the   snow  "),
    ("html entities", "a cat &amp; a dog &lt;3 &quot;friends&quot;&nbsp;at&#32;night &copy; &eacute;t&eacute;"),
    ("double escaped", "&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt; and &amp;amp;amp;"),
    ("legacy entities", "&ampx &notit; &copy2024 &lt&gt &AMP"),
    ("numeric references", "bell&#7;here tab&#9;here &#x1F600; &#128512; &#xFFFF; &#0; &#x80; &#150;"),
    ("unicode whitespace", "wide\u3000space nel\u0085here nbsp\u00a0here fs\u001chere bom\ufeffhere"),
    ("literal special tokens", "<s> start <pad> mid <unk> and <extra_id_7> end </s>"),
    ("unknown characters", "a dog 🐶 and Ω"),
    ("empty", ""),
    ("only spaces", " \t\n "),
    ("long", ", ".join(f"a {c} {a}" for c, a in zip(["red", "blue", "green", "golden"] * 3,
                                                     ["cat", "dog", "fox", "owl", "horse", "tiger"] * 2))),
    ("wan negative prompt", WAN_NEGATIVE),
    ("curly quotes", "the cat’s “best” photo"),
    ("mojibake", "cafÃ© au lait"),
]
# encode_prompt's prompts and negative prompts: ordinary text (ftfy changes none of it), whitespace and HTML.
EMBED_PROMPTS = ["simple", "whitespace runs", "html entities", "long"]
EMBED_NEGATIVES = ["empty", "literal special tokens", "simple", "unknown characters"]


def versions():
    return {"script": "tools/umt5_fixtures.py", "torch": torch.__version__,
            "transformers": transformers.__version__, "diffusers": diffusers.__version__,
            "diffusers_commit": DIFFUSERS_COMMIT, "tokenizers": tokenizers.__version__,
            "sentencepiece": sentencepiece.__version__, "safetensors": safetensors.__version__,
            "ftfy": __import__("ftfy").__version__}


def write_model(out, name, spec, seed):
    path = f"{out}/{name}"
    model = randomize(UMT5EncoderModel(UMT5Config(**spec["config"])), seed)
    model = stored(UMT5EncoderModel, model, path, spec["dtype"])
    config_file = f"{path}/config.json"
    with open(config_file) as f:
        config = json.load(f)
    assert config["model_type"] == "umt5" and config["architectures"] == ["UMT5EncoderModel"], config
    config.update(WAN_CONFIG_KEYS, num_decoder_layers=config["num_layers"])
    with open(config_file, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    reloaded = UMT5EncoderModel.from_pretrained(path, torch_dtype=torch.float32).eval()
    for (n, p), (_, q) in zip(sorted(model.named_parameters()), sorted(reloaded.named_parameters())):
        assert torch.equal(p, q), f"{path}: {n} changed when the Wan keys were added"
    return reloaded


def forward(out, name, spec, model, seed):
    """Three rows, one per length in spec["lengths"] (the first fills L): random body ids, </s>, then <pad>."""
    c = model.config
    length = spec["lengths"][0]
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(spec["lengths"]), length, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for b, n in enumerate(spec["lengths"]):
        ids[b, :n - 1] = torch.randint(2, c.vocab_size, (n - 1,), generator=g)
        ids[b, n - 1] = 1
        mask[b, :n] = 1
    stages = {}
    model.encoder.embed_tokens.register_forward_hook(lambda m, i, o: stages.__setitem__("embeddings", o))
    for k, block in enumerate(model.encoder.block):
        block.register_forward_hook(
            lambda m, i, o, k=k: stages.__setitem__(f"layers.{k}", o[0] if isinstance(o, tuple) else o))
    model.encoder.final_layer_norm.register_forward_hook(
        lambda m, i, o: stages.__setitem__("final_layer_norm", o))
    with torch.no_grad():
        result = model(input_ids=ids, attention_mask=mask)
        for k, block in enumerate(model.encoder.block):
            attention = block.layer[0].SelfAttention
            assert attention.has_relative_attention_bias, "UMT5: every layer has its own bias"
            stages[f"position_bias.{k}"] = attention.compute_bias(length, length)
    # Each layer's table must matter: the biases differ between layers.
    assert not torch.equal(stages["position_bias.0"], stages["position_bias.1"])
    tensors = {"input_ids": ids, "attention_mask": mask, "last_hidden_state": result.last_hidden_state, **stages}
    save_file(contiguous(tensors), f"{out}/{name}-forward.safetensors",
              metadata={**versions(), "component": name, "dtype": str(spec["dtype"])})


def added(content):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def write_tokenizer(out_dir):
    """umt5's layout trained on the T5 fixture's corpus; files in the shape a Wan2.1 directory has them."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "corpus.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(t5_corpus()) + "\n")
        cwd = os.getcwd()
        os.chdir(tmp)  # the model records its paths: relative ones keep it the same run to run
        try:
            sentencepiece.SentencePieceTrainer.train(
                input="corpus.txt", model_prefix="spiece", model_type="unigram", vocab_size=BASE_VOCAB,
                pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="</s>", bos_piece="<s>",
                unk_piece="<unk>", byte_fallback=True, character_coverage=0.995, num_threads=1, minloglevel=2)
        finally:
            os.chdir(cwd)
        spm_dir = os.path.join(tmp, "spm")
        os.mkdir(spm_dir)
        shutil.copyfile(os.path.join(tmp, "spiece.model"), os.path.join(spm_dir, "spiece.model"))
        converted = os.path.join(tmp, "converted")
        T5TokenizerFast.from_pretrained(spm_dir, extra_ids=EXTRA_IDS).save_pretrained(converted)
        with open(os.path.join(converted, "tokenizer.json"), encoding="utf-8") as f:
            tokenizer_json = json.load(f)
    # transformers 5 writes its own T5 pipeline's unk id (2) and byte_fallback false; a file converted by
    # transformers 4 from umt5's SentencePiece model carries the model's <unk> id and byte fallback. transformers
    # 5 reads neither (it rebuilds the Unigram model from the vocabulary), which the test checks the engine
    # also does.
    model = tokenizer_json["model"]
    assert model["vocab"][3][0] == "<unk>" and model["vocab"][2][0] == "<s>", model["vocab"][:4]
    model.update(unk_id=3, byte_fallback=True)
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False)
    pieces = [piece for piece, _ in model["vocab"]]
    extra = [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]
    assert pieces[TOKENIZER_VOCAB - 1] == "<extra_id_0>" and len(pieces) == TOKENIZER_VOCAB
    decoder = {str(i): added(pieces[i]) for i in range(4)}
    decoder.update({str(pieces.index(t)): added(t) for t in reversed(extra)})
    config = {
        "add_prefix_space": None, "added_tokens_decoder": decoder, "additional_special_tokens": extra,
        "clean_up_tokenization_spaces": True, "eos_token": "</s>", "extra_ids": EXTRA_IDS, "legacy": True,
        "model_max_length": 1000000000000000019884624838656, "pad_token": "<pad>", "sp_model_kwargs": {},
        "spaces_between_special_tokens": False, "tokenizer_class": "T5Tokenizer", "unk_token": "<unk>",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    special = {"additional_special_tokens": extra, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2, ensure_ascii=False)
        f.write("\n")


def clean(prompt, ftfy):
    available = pipeline_wan.is_ftfy_available
    pipeline_wan.is_ftfy_available = lambda: ftfy and available()
    try:
        return pipeline_wan.prompt_clean(prompt)
    finally:
        pipeline_wan.is_ftfy_available = available


def tokenize(tokenizer, cleaned, max_length):
    """WanPipeline._get_t5_prompt_embeds's tokenizer call, and the untruncated length."""
    inputs = tokenizer([cleaned], padding="max_length", max_length=max_length, truncation=True,
                       add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    untruncated = tokenizer(cleaned, add_special_tokens=True)["input_ids"]
    return {"ids": inputs.input_ids[0].tolist(), "mask_length": int(inputs.attention_mask[0].sum()),
            "tokens": len(untruncated)}


def write_prompts(out, tokenizer):
    assert pipeline_wan.is_ftfy_available(), "ftfy must be installed: the fixture records what it changes"
    cases = []
    for name, prompt in PROMPTS:
        cleaned, without_ftfy = clean(prompt, True), clean(prompt, False)
        case = {"name": name, "prompt": prompt, "clean": cleaned, "clean_without_ftfy": without_ftfy,
                "ftfy_changes": cleaned != without_ftfy,
                "html_unescape_twice": html.unescape(html.unescape(prompt))}
        for m in MAX_LENGTHS:
            case[f"tokens_{m}"] = tokenize(tokenizer, cleaned, m)
            if case["ftfy_changes"]:
                case[f"tokens_without_ftfy_{m}"] = tokenize(tokenizer, without_ftfy, m)
        cases.append(case)
    # What ftfy.fix_text changes here: a third HTML unescape, U+0085 read as cp1252's ellipsis, control
    # characters and U+FEFF dropped, fullwidth punctuation (Wan's own negative prompt), curly quotes, mojibake.
    changed = [c["name"] for c in cases if c["ftfy_changes"]]
    assert set(changed) == {"double escaped", "unicode whitespace", "wan negative prompt", "curly quotes",
                            "mojibake"}, changed
    long_case = next(c for c in cases if c["name"] == "long")
    assert long_case["tokens_16"]["tokens"] > 16, "the long prompt must be truncated at 16"
    unknown = next(c for c in cases if c["name"] == "unknown characters")
    assert 2 in unknown["tokens_16"]["ids"], "transformers 5 gives id 2 for a character outside the vocabulary"
    with open(f"{out}/umt5-prompts.json", "w", encoding="utf-8") as f:
        json.dump({"versions": versions(), "max_lengths": MAX_LENGTHS, "cases": cases}, f, ensure_ascii=False,
                  separators=(",", ":"))
        f.write("\n")
    return cases


def write_prompt_embeds(out, tokenizer, text_encoder, cases):
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, transformer=None, vae=None, scheduler=None)
    by_name = {c["name"]: c for c in cases}
    prompts = [by_name[n]["prompt"] for n in EMBED_PROMPTS]
    negatives = [by_name[n]["prompt"] for n in EMBED_NEGATIVES]
    for n in EMBED_PROMPTS + EMBED_NEGATIVES:
        assert not by_name[n]["ftfy_changes"], f"{n}: an embedding prompt must not depend on ftfy"
    tensors = {}
    with torch.no_grad():
        for m in EMBED_LENGTHS:
            embeds, negative = pipe.encode_prompt(prompts, negative_prompt=negatives,
                                                  do_classifier_free_guidance=True, max_sequence_length=m,
                                                  device=torch.device("cpu"))
            tensors[f"prompt_embeds.{m}"] = embeds
            tensors[f"negative_prompt_embeds.{m}"] = negative
    meta = {**versions(), "prompts": json.dumps(EMBED_PROMPTS), "negative_prompts": json.dumps(EMBED_NEGATIVES),
            "max_sequence_lengths": json.dumps(EMBED_LENGTHS), "text_encoder": "umt5-a",
            "tokenizer": "umt5-tokenizer"}
    save_file(contiguous(tensors), f"{out}/umt5-prompt-embeds.safetensors", metadata=meta)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/wan")
    args = p.parse_args()
    print(json.dumps(versions()))
    os.makedirs(args.out, exist_ok=True)
    mine = [*CONFIGS, "umt5-tokenizer"]
    for name in mine:
        shutil.rmtree(f"{args.out}/{name}", ignore_errors=True)
    torch.manual_seed(0)
    for k, (name, spec) in enumerate(CONFIGS.items()):
        model = write_model(args.out, name, spec, 1300 + 10 * k)
        forward(args.out, name, spec, model, 1301 + 10 * k)
    write_tokenizer(f"{args.out}/umt5-tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(f"{args.out}/umt5-tokenizer")
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, len(tokenizer)) == (0, 1, TOKENIZER_VOCAB)
    cases = write_prompts(args.out, tokenizer)
    text_encoder = UMT5EncoderModel.from_pretrained(f"{args.out}/umt5-a", torch_dtype=torch.float32).eval()
    write_prompt_embeds(args.out, tokenizer, text_encoder, cases)
    for case in cases:
        t = case["tokens_16"]
        print(f"  {case['name']:24s} tokens {t['tokens']:3d}{'*' if t['tokens'] > 16 else ' '}"
              f"{'  ftfy changes it' if case['ftfy_changes'] else ''}")
    for root, _, files in sorted(os.walk(args.out)):
        for f in sorted(files):
            path = os.path.join(root, f)
            if any(os.path.relpath(path, args.out).startswith(n) for n in ("umt5",)):
                print(f"  {os.path.relpath(path, args.out):40s} {os.path.getsize(path):8d} B")


if __name__ == "__main__":
    main()
