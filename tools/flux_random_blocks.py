"""FLUX.1 at its real width with a few blocks, and its two text encoders at their real widths with a few
layers, random BF16 weights; and diffusers' / transformers' timings and outputs of the same on PyTorch (CPU).

No real checkpoint is reachable from these machines, and the whole FLUX.1 (12B parameters, 23.8 GB in BF16)
does not fit their memory, so deno task bench:flux times one block of each kind at the real shapes and
extrapolates. --out writes, in FluxPipeline's folder names (no model_index.json: it is not a whole pipeline):
  transformer/     FluxTransformer2DModel as FLUX.1-dev configures it (24 heads x 128, axes_dims_rope
                   (16, 56, 56), joint_attention_dim 4096, pooled 768, guidance embeddings), --layers double-
                   and --single-layers single-stream blocks (1 and 1)
  text_encoder/    CLIPTextModel as CLIP-L (768 wide, 12 heads, intermediate 3072, quick_gelu, 77 positions,
                   FLUX's legacy eos_token_id 2), --clip-layers layers (2)
  text_encoder_2/  T5EncoderModel as T5 v1.1 XXL (d_model 4096, 64 heads x 64, d_ff 10240, gated-gelu,
                   32 buckets / max distance 128), --t5-layers layers (2). The vocabulary is cut to 8192 rows:
                   T5-XXL's 32128 x 4096 BF16 table (251 MiB) is over the 128 MiB storage binding of software
                   adapters, and an embedding lookup costs the same whatever the table's height.
--width-divisor N divides every head count by N (FLUX 24, T5 64, CLIP 12; N in 1, 2, 4) and every width
with it, head dims kept: a model of the same shape that a software adapter runs in minutes, for checking the
benchmark. Weights are seeded noise: tools/dit_random_pipeline.py's for the transformer, and for the text
encoders tools/flux_fixtures.py's, whose N(0, 1) token tables and relative attention bias move the outputs.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/flux_random_blocks.py --out /work/flux-blocks

--bench DIR --inputs FILE --outputs FILE is what deno task bench:flux --python runs after the engine's side.
It loads DIR in float32 (the BF16 weights widened, as the engine computes), runs the transformer's forward on
the engine's inputs (FILE, safetensors named as the forward's arguments; img_ids of a --size square image and
zero txt_ids as FluxPipeline makes them) and CLIPTextModel (77 tokens) and T5EncoderModel (--t5-tokens) on
the ids both sides compute, and writes to --outputs both streams after transformer_blocks[0] and after
single_transformer_blocks[0], the sample, and each encoder's last_hidden_state (and CLIP's pooler_output).
Then it prints one JSON line of medians of --repeat runs after a warm-up: each of those two blocks called on
the arguments the forward gave it (diffusers' blocks compute their own AdaLayerNormZero modulation, the
engine runs it in the prologue), and each encoder's forward, whole and per layer (forward hooks around each
layer), with the torch version and thread count.
diffusers is used at commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 (see references.md).
"""

import argparse
import json
import statistics
import time

import torch
import diffusers
import transformers
from diffusers import FluxTransformer2DModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from dit_random_pipeline import median_seconds, randomize
from flux_fixtures import contiguous, image_ids, randomize_text

FLUX_DEV = dict(patch_size=1, in_channels=64, attention_head_dim=128, num_attention_heads=24,
                joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=0,
              eos_token_id=2, pad_token_id=1, projection_dim=768)
T5_XXL = dict(vocab_size=8192, d_model=4096, d_kv=64, d_ff=10240, num_heads=64, relative_attention_num_buckets=32,
              relative_attention_max_distance=128, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu")


def configs(divisor, layers, single_layers, clip_layers, t5_layers):
    if divisor not in (1, 2, 4):
        raise SystemExit("--width-divisor must be 1, 2 or 4 (it divides 24, 64 and 12 heads)")
    t5_width, clip_width = T5_XXL["d_model"] // divisor, CLIP_L["hidden_size"] // divisor
    flux = {**FLUX_DEV, "num_attention_heads": FLUX_DEV["num_attention_heads"] // divisor, "num_layers": layers,
            "num_single_layers": single_layers, "joint_attention_dim": t5_width,
            "pooled_projection_dim": clip_width}
    clip = {**CLIP_L, "hidden_size": clip_width, "intermediate_size": CLIP_L["intermediate_size"] // divisor,
            "num_attention_heads": CLIP_L["num_attention_heads"] // divisor, "num_hidden_layers": clip_layers}
    t5 = {**T5_XXL, "d_model": t5_width, "d_ff": T5_XXL["d_ff"] // divisor,
          "num_heads": T5_XXL["num_heads"] // divisor, "num_layers": t5_layers}
    return flux, clip, t5


def write(out, divisor, layers, single_layers, clip_layers, t5_layers):
    flux, clip, t5 = configs(divisor, layers, single_layers, clip_layers, t5_layers)
    randomize(FluxTransformer2DModel(**flux), 1).to(torch.bfloat16).save_pretrained(f"{out}/transformer")
    randomize_text(CLIPTextModel(CLIPTextConfig(**clip)), 2).to(torch.bfloat16).save_pretrained(f"{out}/text_encoder")
    randomize_text(T5EncoderModel(T5Config(**t5)), 3).to(torch.bfloat16).save_pretrained(f"{out}/text_encoder_2")
    print(json.dumps({"out": out, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
                      "torch": torch.__version__}))


def token_ids(length, vocab):
    """[1, length] ids spread over the vocabulary; the same formula as src/cli/bench/text_encoders.ts."""
    return torch.tensor([[(i * 7919 + 1) % vocab for i in range(length)]])


def flux_blocks(path, inputs, size, repeat):
    """The forward on the engine's inputs, both streams recorded after the first block of each kind; then
    each of those blocks timed on the arguments the forward gave it."""
    model = FluxTransformer2DModel.from_pretrained(f"{path}/transformer", torch_dtype=torch.float32).eval()
    grid, text_tokens = size // 16, inputs["encoder_hidden_states"].shape[1]
    first = {"double": model.transformer_blocks[0], "single": model.single_transformer_blocks[0]}
    calls, outputs, hooks = {}, {}, []
    for kind, block in first.items():
        def called(module, args, kwargs, kind=kind):
            calls[kind] = (args, kwargs)

        def returned(module, args, result, kind=kind):
            outputs[f"{kind}.text"], outputs[f"{kind}.image"] = result
        hooks += [block.register_forward_pre_hook(called, with_kwargs=True), block.register_forward_hook(returned)]
    with torch.no_grad():
        outputs["sample"] = model(**inputs, img_ids=image_ids(grid, grid), txt_ids=torch.zeros(text_tokens, 3)).sample
        for hook in hooks:
            hook.remove()
        seconds = {kind: median_seconds(lambda block=block, kind=kind: block(*calls[kind][0], **calls[kind][1]),
                                        repeat)
                   for kind, block in first.items()}
    return seconds, outputs


def encoder_seconds(model, layers, ids, repeat):
    """Median seconds of the whole forward and of one layer (over every layer of every timed run)."""
    started, layer_times = {}, []
    for k, layer in enumerate(layers):
        layer.register_forward_pre_hook(lambda m, i, k=k: started.__setitem__(k, time.perf_counter()))
        layer.register_forward_hook(lambda m, i, o, k=k: layer_times.append(time.perf_counter() - started[k]))
    with torch.no_grad():
        forward = median_seconds(lambda: model(input_ids=ids), repeat)
    # The warm-up's layers are not timed runs.
    return {"forward_seconds": forward, "layer_seconds": statistics.median(layer_times[len(layers):])}


def encoder(model, layers, tokens, repeat, names):
    ids = token_ids(tokens, model.config.vocab_size)
    with torch.no_grad():
        out = model(input_ids=ids)
    return {"tokens": tokens, **encoder_seconds(model, layers, ids, repeat)}, {n: getattr(out, n) for n in names}


def bench(path, inputs_path, outputs_path, size, t5_tokens, repeat):
    blocks_seconds, outputs = flux_blocks(path, load_file(inputs_path), size, repeat)
    clip = CLIPTextModel.from_pretrained(f"{path}/text_encoder", dtype=torch.float32).eval()
    clip_row, clip_out = encoder(clip, clip.encoder.layers, clip.config.max_position_embeddings, repeat,
                                 ("last_hidden_state", "pooler_output"))
    t5 = T5EncoderModel.from_pretrained(f"{path}/text_encoder_2", dtype=torch.float32).eval()
    t5_row, t5_out = encoder(t5, t5.encoder.block, t5_tokens, repeat, ("last_hidden_state",))
    outputs |= {f"clip.{k}": v for k, v in clip_out.items()} | {f"t5.{k}": v for k, v in t5_out.items()}
    save_file(contiguous(outputs), outputs_path)
    print(json.dumps({
        "blocks_seconds": blocks_seconds, "clip": clip_row, "t5": t5_row,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "diffusers": diffusers.__version__,
        "transformers": transformers.__version__}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--bench")
    p.add_argument("--width-divisor", type=int, default=1)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--single-layers", type=int, default=1)
    p.add_argument("--clip-layers", type=int, default=2)
    p.add_argument("--t5-layers", type=int, default=2)
    p.add_argument("--inputs")
    p.add_argument("--outputs")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--t5-tokens", type=int, default=512)
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    if args.out:
        write(args.out, args.width_divisor, args.layers, args.single_layers, args.clip_layers, args.t5_layers)
    if args.bench:
        if not (args.inputs and args.outputs):
            raise SystemExit("--bench needs --inputs (the engine's) and --outputs (where PyTorch's go)")
        bench(args.bench, args.inputs, args.outputs, args.size, args.t5_tokens, args.repeat)


if __name__ == "__main__":
    main()
