"""Reference outputs of transformers' CLIPTextModel and T5EncoderModel at tiny random configs, for
tests/model/text_encoders_test.ts.

Writes under tests/fixtures/text/:
  <name>/                       the model directory as save_pretrained writes it (config.json, model.safetensors)
  <name>-forward.safetensors    input_ids (batch 2, pads at the end), every stage (after the embeddings, after
                                each layer, the final norm) and last_hidden_state, for CLIP pooler_output, for
                                T5 the first layer's position_bias [1, heads, L, L]
  t5-relative-buckets.safetensors  T5Attention._relative_position_bucket (bidirectional) of relative positions
                                -600..600 with FLUX's T5-XXL settings (32 buckets, max distance 128) and with
                                settings where float64 arithmetic would put a boundary distance in another
                                bucket than torch's float32 does ("bucket.<num_buckets>.<max_distance>")

Every parameter is overwritten with seeded noise that matters: N(0, 1/fan_in) matrices, N(0, 1) embedding
tables (tokens, positions and T5's relative attention bias, so that each moves the output), small biases, and
1 + noise norm scales. The BF16 configs are saved in BF16 and reloaded in float32, so their references are
computed in float32 from the stored (rounded) weights, which is what the engine reads.
clip-a is written with the "text_model." key prefix that transformers 4.x saved and FLUX's text_encoder
carries; transformers 5 saves without it and reads both, and so must the engine.

Run (../shared/design/references.md has the set-up):
  python3 -m venv /work/ref-venv && /work/ref-venv/bin/pip install torch==2.13.0+cpu numpy transformers \\
      safetensors tokenizers sentencepiece huggingface_hub pillow regex requests filelock importlib_metadata scipy
  /work/ref-venv/bin/python tools/text_encoder_fixtures.py
"""

import argparse
import json
import os
import shutil

import numpy as np
import safetensors
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel
from transformers.models.t5.modeling_t5 import T5Attention

BATCH = 2

CLIP_CONFIGS = {
    # FLUX's CLIP-L in miniature: quick_gelu, the legacy eos_token_id 2 (pooled at the highest id), 77
    # positions fed whole, three heads of 12, odd vocabulary and MLP widths; F32, "text_model." keys.
    "clip-a": dict(config=dict(vocab_size=211, hidden_size=36, intermediate_size=101, num_hidden_layers=2,
                               num_attention_heads=3, max_position_embeddings=77, hidden_act="quick_gelu",
                               layer_norm_eps=1e-5, bos_token_id=209, eos_token_id=2, pad_token_id=1),
                   dtype=torch.float32, length=77, bos=209, eot=210, pads=(210, 210), prefix="text_model."),
    # eos_token_id 5 (pooled at its first occurrence, which is not the highest id), erf GELU, four heads of
    # 8, a 16-token input (shorter than the 77 positions), BF16.
    "clip-b": dict(config=dict(vocab_size=150, hidden_size=32, intermediate_size=75, num_hidden_layers=3,
                               num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
                               layer_norm_eps=1e-6, bos_token_id=4, eos_token_id=5, pad_token_id=1),
                   dtype=torch.bfloat16, length=16, bos=4, eot=5, pads=(5, 1), prefix=""),
}

T5_CONFIGS = {
    # Odd d_model (scalar loads) unequal to heads x d_kv, 8 buckets with max distance 20 at 29 tokens, so
    # exact, logarithmic and clamped buckets all occur; F32.
    "t5-a": dict(config=dict(vocab_size=173, d_model=37, d_kv=8, d_ff=53, num_layers=3, num_heads=3,
                             relative_attention_num_buckets=8, relative_attention_max_distance=20,
                             layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu"),
                 dtype=torch.float32, length=29),
    # FLUX's bucketing (32, 128), four heads of 12, another eps; BF16.
    "t5-b": dict(config=dict(vocab_size=256, d_model=40, d_kv=12, d_ff=64, num_layers=2, num_heads=4,
                             relative_attention_num_buckets=32, relative_attention_max_distance=128,
                             layer_norm_epsilon=1e-5, feed_forward_proj="gated-gelu"),
                 dtype=torch.bfloat16, length=40),
}


def randomize(module, seed, bias=0.1):
    """N(0, 1) token tables and T5's relative attention bias, so that each moves the output; `bias`: the scale
    of the biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("bias") and p.ndim == 1:
                p.copy_(bias * noise)
            elif p.ndim == 1:  # norm scales
                p.copy_(1 + 0.1 * noise)
            elif "embedding" in name or "relative_attention_bias" in name or name.endswith("shared.weight"):
                p.copy_(noise)
            else:
                p.copy_(noise / np.sqrt(p.shape[1]))
    return module


def stored(model_cls, model, path, dtype, prefix=""):
    """Saves in `dtype` (with `prefix` on every key), reloads in float32: the reference runs on exactly the
    stored weights."""
    model.to(dtype).save_pretrained(path)
    if prefix:
        file = f"{path}/model.safetensors"
        tensors = load_file(file)
        save_file({prefix + k: v for k, v in tensors.items()}, file, metadata={"format": "pt"})
    reloaded = model_cls.from_pretrained(path, torch_dtype=torch.float32).eval()
    for (name, p), (_, q) in zip(sorted(model.named_parameters()), sorted(reloaded.named_parameters())):
        assert torch.equal(p.float(), q), f"{path}: {name} did not reload as stored"
    return reloaded


def contiguous(tensors):
    return {k: v.detach().to(torch.float32).clone().contiguous() for k, v in tensors.items()}


def header(extra):
    return {"script": "tools/text_encoder_fixtures.py", "torch": torch.__version__,
            "transformers": transformers.__version__, "safetensors": safetensors.__version__, **extra}


def token_ids(spec, vocab, seed, avoid):
    """[BATCH, L]: bos, random body tokens (none in `avoid`), the end-of-text token, then pads."""
    g = torch.Generator().manual_seed(seed)
    length = spec["length"]
    rows = []
    for b, pad in enumerate(spec.get("pads", (0,) * BATCH)):
        words = length // 2 - 3 * b
        body = torch.randint(0, vocab, (words,), generator=g)
        body = body[~torch.isin(body, torch.tensor(avoid))][:words]
        row = ([spec["bos"]] if "bos" in spec else []) + body.tolist() + [spec.get("eot", 1)]
        rows.append(row + [pad] * (length - len(row)))
    return torch.tensor(rows, dtype=torch.int64)


def clip_forward(out, name, spec, seed):
    model = randomize(CLIPTextModel(CLIPTextConfig(**spec["config"])), seed)
    model = stored(CLIPTextModel, model, f"{out}/{name}", spec["dtype"], spec["prefix"])
    c = model.config
    ids = token_ids(spec, c.vocab_size, seed + 1, avoid=[spec["bos"], spec["eot"], c.eos_token_id, 1, 2])
    legacy_rows = ids.argmax(-1)
    eos_rows = (ids == c.eos_token_id).int().argmax(-1)
    # The two pooling rules must pick different rows, or the fixture could not tell them apart.
    assert not torch.equal(legacy_rows, eos_rows), (legacy_rows, eos_rows)
    stages = {}
    model.embeddings.register_forward_hook(lambda m, i, o: stages.__setitem__("embeddings", o))
    for k, layer in enumerate(model.encoder.layers):
        layer.register_forward_hook(lambda m, i, o, k=k: stages.__setitem__(f"layers.{k}", o))
    model.final_layer_norm.register_forward_hook(lambda m, i, o: stages.__setitem__("final_layer_norm", o))
    with torch.no_grad():
        result = model(input_ids=ids)
    tensors = {"input_ids": ids, "last_hidden_state": result.last_hidden_state,
               "pooler_output": result.pooler_output, **stages}
    save_file(contiguous(tensors), f"{out}/{name}-forward.safetensors",
              metadata=header({"component": name, "dtype": str(spec["dtype"])}))


def t5_forward(out, name, spec, seed):
    model = randomize(T5EncoderModel(T5Config(**spec["config"])), seed)
    model = stored(T5EncoderModel, model, f"{out}/{name}", spec["dtype"])
    ids = token_ids(spec, model.config.vocab_size, seed + 1, avoid=[0, 1])
    stages = {}
    model.encoder.embed_tokens.register_forward_hook(lambda m, i, o: stages.__setitem__("embeddings", o))
    for k, block in enumerate(model.encoder.block):
        block.register_forward_hook(lambda m, i, o, k=k: stages.__setitem__(f"layers.{k}", o[0]))
    model.encoder.block[0].register_forward_hook(lambda m, i, o: stages.__setitem__("position_bias", o[1]))
    model.encoder.final_layer_norm.register_forward_hook(
        lambda m, i, o: stages.__setitem__("final_layer_norm", o))
    with torch.no_grad():
        result = model(input_ids=ids)
    tensors = {"input_ids": ids, "last_hidden_state": result.last_hidden_state, **stages}
    save_file(contiguous(tensors), f"{out}/{name}-forward.safetensors",
              metadata=header({"component": name, "dtype": str(spec["dtype"])}))


# FLUX's, then four of the few (num_buckets, max_distance) up to (68, 300) where the log ratio of a distance
# is a whole number in exact arithmetic, so float64 truncates it differently from torch's float32.
BUCKETINGS = ((32, 128), (18, 128), (20, 160), (38, 196), (38, 288))


def relative_buckets(out):
    positions = torch.arange(-600, 601)
    tensors = {"relative_position": positions}
    for buckets, distance in BUCKETINGS:
        tensors[f"bucket.{buckets}.{distance}"] = T5Attention._relative_position_bucket(
            positions, bidirectional=True, num_buckets=buckets, max_distance=distance)
    save_file(contiguous(tensors), f"{out}/t5-relative-buckets.safetensors",
              metadata=header({"bidirectional": "true"}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/text")
    args = p.parse_args()
    torch.manual_seed(0)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    print(json.dumps(header({})))
    for k, (name, spec) in enumerate(CLIP_CONFIGS.items()):
        clip_forward(args.out, name, spec, 500 + 10 * k)
    for k, (name, spec) in enumerate(T5_CONFIGS.items()):
        t5_forward(args.out, name, spec, 600 + 10 * k)
    relative_buckets(args.out)


if __name__ == "__main__":
    main()
