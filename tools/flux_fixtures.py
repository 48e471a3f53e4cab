"""FLUX.1 reference outputs of diffusers' own code at tiny random configs, for tests/model.

Writes under tests/fixtures/flux/:
  transformer-<name>/               FluxTransformer2DModel directories (save_pretrained layout)
  transformer-<name>-forward.safetensors
                                    inputs named like the forward arguments, every stage (the embedders, both
                                    streams after each double-stream block, after each single-stream block, the
                                    final modulated norm) and output.sample
  pipeline/                         a FluxPipeline directory without text encoders (components null, as
                                    diffusers allows), dev layout (guidance embeddings), a 4-level VAE with a
                                    shift_factor, FlowMatchEuler with dynamic shifting
  pipeline-run.safetensors          prompt_embeds, pooled_prompt_embeds, packed latents [B, N, 4C] as
                                    prepare_latents draws them, and the np images of an N-step run
  pipeline-text/                    the same with all four text components: a tiny CLIPTextModel and
                                    T5EncoderModel (BF16, CLIP's keys with FLUX's "text_model." prefix),
                                    tokenizer/ in FLUX's vocab.json + merges.txt layout with OpenAI's first
                                    1000 merges, tokenizer_2/ the T5 tokenizer.json of tests/fixtures/tokenizers
  schedule-<name>.safetensors       FluxPipeline's own schedule (retrieve_timesteps with sigmas linspace(1, 1/N, N)
                                    and the mu of calculate_shift) for FLUX.1 dev's and schnell's published
                                    scheduler configs at several sizes: timesteps and sigmas (metadata: the
                                    config as JSON, steps, image tokens, mu)
  pipeline-text-run-<run>.safetensors
                                    a FluxPipeline run from prompts (metadata: prompts as JSON, the negative
                                    prompt and true_cfg_scale of true CFG, each prompt's untruncated CLIP and
                                    T5 token counts): latents, the images, and per prompt what encode_prompt
                                    gives (prompt_embeds [P, 512, 24], pooled_prompt_embeds [P, 12]) and the
                                    ids of both tokenizers (clip_input_ids, t5_input_ids), negative_* the same
                                    for the negative prompt

Weights are seeded noise (see tools/diffusers_fixtures.py for why); the dev config stores BF16 and its
reference runs in float32 from the stored weights. pipeline-text copies its tokenizers from
tests/fixtures/tokenizers (tools/tokenizer_fixtures.py), which must exist.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/flux_fixtures.py
"""

import argparse
import json
import os
import shutil

import numpy as np
import torch
import diffusers
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

from diffusers_fixtures import DIFFUSERS_COMMIT, contiguous, randomize
from text_encoder_fixtures import randomize as randomize_text_encoder


def header(extra):
    return {"script": "tools/flux_fixtures.py", "torch": torch.__version__,
            "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", **extra}


CONFIGS = {
    # dev: guidance embeddings, two heads of 16 split (4, 6, 6) over (t, h, w), BF16 weights.
    "dev": dict(config=dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=16,
                            num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=12,
                            guidance_embeds=True, axes_dims_rope=(4, 6, 6)),
                dtype=torch.bfloat16, grid=(2, 3), text=5, batch=2),
    # schnell: no guidance embedding, three heads of 8, odd text length, F32.
    "schnell": dict(config=dict(patch_size=1, in_channels=12, num_layers=1, num_single_layers=2,
                                attention_head_dim=8, num_attention_heads=3, joint_attention_dim=20,
                                pooled_projection_dim=8, guidance_embeds=False, axes_dims_rope=(2, 2, 4)),
                    dtype=torch.float32, grid=(3, 2), text=7, batch=1),
}


def image_ids(h, w):
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def forward_stages(model, inputs):
    """model(**inputs) and every stage tests/model compares: the embedders and temb, both streams after each
    double- and single-stream block, the final modulated norm, and output.sample. The hooks only record, and
    are removed again."""
    stages = {}

    def record(name):
        return lambda module, inputs, output: stages.__setitem__(name, output)

    def both_streams(name):
        # A hook that returns something replaces the module's output: this one only records.
        def hook(module, inputs, outputs):
            stages[f"{name}.text"], stages[f"{name}.image"] = outputs
        return hook

    handles = [model.x_embedder.register_forward_hook(record("x_embedder")),
               model.context_embedder.register_forward_hook(record("context_embedder")),
               model.time_text_embed.register_forward_hook(record("temb")),
               model.proj_out.register_forward_pre_hook(lambda m, i: stages.__setitem__("norm_out", i[0]))]
    handles += [block.register_forward_hook(both_streams(f"double.{k}"))
                for k, block in enumerate(model.transformer_blocks)]
    handles += [block.register_forward_hook(both_streams(f"single.{k}"))
                for k, block in enumerate(model.single_transformer_blocks)]
    try:
        with torch.no_grad():
            stages["sample"] = model(**inputs).sample
    finally:
        for handle in handles:
            handle.remove()
    return stages


def forward(out, name, spec, seed):
    path = f"{out}/transformer-{name}"
    randomize(FluxTransformer2DModel(**spec["config"]), seed).to(spec["dtype"]).save_pretrained(path)
    model = FluxTransformer2DModel.from_pretrained(path, torch_dtype=torch.float32).eval()
    c = model.config
    g = torch.Generator().manual_seed(seed + 1)
    h, w = spec["grid"]
    batch, text = spec["batch"], spec["text"]
    inputs = {
        "hidden_states": torch.randn((batch, h * w, c.in_channels), generator=g),
        "encoder_hidden_states": torch.randn((batch, text, c.joint_attention_dim), generator=g),
        "pooled_projections": torch.randn((batch, c.pooled_projection_dim), generator=g),
        "timestep": torch.tensor([0.9, 0.25][:batch]),
        "img_ids": image_ids(h, w),
        "txt_ids": torch.zeros(text, 3),
    }
    if c.guidance_embeds:
        inputs["guidance"] = torch.tensor([3.5, 1.0][:batch])
    save_file(contiguous({**inputs, **forward_stages(model, inputs)}), f"{path}-forward.safetensors",
              metadata=header({"component": f"transformer-{name}", "dtype": str(spec["dtype"])}))


def tiny_vae(seed):
    return randomize(AutoencoderKL(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                   norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 4,
                                   up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.3611,
                                   shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
                                   sample_size=32), seed)


def flux_scheduler():
    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)


def packed_latents(batch, height, width, g, channels=4, vae_scale=8):
    """prepare_latents: randn [B, C, 2 * (H // (2 s)), 2 * (W // (2 s))] for the VAE's scale s, then packed 2x2
    into [B, N, 4C]."""
    cell = 2 * vae_scale
    latents = torch.randn((batch, channels, 2 * (height // cell), 2 * (width // cell)), generator=g)
    return FluxPipeline._pack_latents(latents, batch, channels, latents.shape[2], latents.shape[3])


def pipeline(out, seed):
    path = f"{out}/pipeline"
    transformer = randomize(FluxTransformer2DModel(**CONFIGS["dev"]["config"]), seed)
    vae = tiny_vae(seed + 1)
    FluxPipeline(scheduler=flux_scheduler(), vae=vae, transformer=transformer.to(torch.bfloat16),
                 text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None).save_pretrained(path)
    pipe = FluxPipeline.from_pretrained(path, torch_dtype=torch.float32, text_encoder=None, tokenizer=None,
                                        text_encoder_2=None, tokenizer_2=None)
    g = torch.Generator().manual_seed(seed + 2)
    height, width, steps, guidance = 32, 48, 4, 3.5
    prompt_embeds = torch.randn((1, 5, 24), generator=g)
    pooled = torch.randn((1, 12), generator=g)
    packed = packed_latents(1, height, width, g)
    images = pipe(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, latents=packed, height=height,
                  width=width, num_inference_steps=steps, guidance_scale=guidance, output_type="np").images
    save_file(contiguous({"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled, "latents": packed,
                          "images": torch.from_numpy(images)}), f"{out}/pipeline-run.safetensors",
              metadata=header({"height": str(height), "width": str(width), "num_inference_steps": str(steps),
                               "guidance_scale": str(guidance)}))


# The engine's tokenizer fixtures (tools/tokenizer_fixtures.py): OpenAI's CLIP BPE and a T5 unigram model.
TOKENIZERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tokenizers")
# OpenAI's first merges only, so that CLIP's token table stays small: 256 byte symbols, 256 end-of-word byte
# symbols, the merges, then the two special tokens renumbered right after them.
CLIP_MERGES = 1000
# FluxPipeline's max_sequence_length for dev, which the engine takes from the card (512 for dev, 256 for
# schnell); FluxPipeline's CLIP length is the tokenizer's model_max_length.
T5_TOKENS = 512
CLIP_TOKENS = 77


def write_clip_tokenizer(path):
    """FLUX's tokenizer/ layout (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json)."""
    with open(f"{TOKENIZERS}/clip/merges.txt", encoding="utf-8") as f:
        header_line, *lines = f.read().split("\n")
    merges = lines[:CLIP_MERGES]
    with open(f"{TOKENIZERS}/clip/vocab.json", encoding="utf-8") as f:
        full = json.load(f)
    by_id = sorted(full, key=full.get)
    tokens = by_id[:512 + CLIP_MERGES] + ["<|startoftext|>", "<|endoftext|>"]
    # The full table lists merge k's result at id 512 + k: the truncated one keeps every id it has.
    assert all("".join(m.split(" ")) == tokens[512 + k] for k, m in enumerate(merges))
    vocab = {t: i for i, t in enumerate(tokens)}
    os.makedirs(path)
    with open(f"{path}/vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(f"{path}/merges.txt", "w", encoding="utf-8") as f:
        f.write(header_line + "\n" + "\n".join(merges) + "\n")
    with open(f"{TOKENIZERS}/clip/tokenizer_config.json", encoding="utf-8") as f:
        config = json.load(f)
    config["added_tokens_decoder"] = {str(vocab[t["content"]]): t for t in config["added_tokens_decoder"].values()}
    with open(f"{path}/tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    shutil.copyfile(f"{TOKENIZERS}/clip/special_tokens_map.json", f"{path}/special_tokens_map.json")
    return len(vocab)


def write_t5_tokenizer(path):
    """FLUX's tokenizer_2/ layout less spiece.model, which tokenizer.json makes unnecessary."""
    os.makedirs(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(f"{TOKENIZERS}/t5/{name}", f"{path}/{name}")
    with open(f"{path}/tokenizer.json", encoding="utf-8") as f:
        return len(json.load(f)["model"]["vocab"])


def randomize_text(module, seed):
    """tools/text_encoder_fixtures.py's randomiser (N(0, 1) token tables and T5's relative attention bias, so
    that each moves the output) at this script's bias scale."""
    return randomize_text_encoder(module, seed, bias=0.05)


def long_prompt():
    """Over both limits (77 CLIP tokens, 512 T5 tokens), in words the T5 model has pieces for."""
    animals = ["cat", "dog", "fox", "owl", "horse", "tiger", "zebra", "eagle", "rabbit", "dolphin"]
    styles = ["watercolor", "oil painting", "pencil sketch", "digital art", "macro", "golden hour"]
    return ", ".join(f"a {styles[i % len(styles)]} of a {animals[i % len(animals)]} number {i}"
                     for i in range(100))


# The runs of pipeline-text, each from fixed latents with FluxPipeline's own text encoding: one prompt drawn
# twice, an over-long prompt batched with a short one, and true CFG against a negative prompt.
TEXT_RUNS = {
    "single": dict(prompt="a watercolor painting of a red fox in the snow, highly detailed",
                   num_images_per_prompt=2),
    "truncated": dict(prompt=[long_prompt(), "a photo of a cat"], num_images_per_prompt=1),
    "true-cfg": dict(prompt="a golden retriever on a skateboard, 35mm film", num_images_per_prompt=1,
                     negative_prompt="blurry, low quality", true_cfg_scale=4.0),
}


def pipeline_text(out, seed):
    """pipeline-text/: every component, prompts encoded by diffusers' FluxPipeline itself."""
    path = f"{out}/pipeline-text"
    # The over-long prompt's truncation warnings print the whole padded tail; the asserts below stand for them.
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    clip_vocab = write_clip_tokenizer(f"{out}/tokenizer-staging/tokenizer")
    t5_vocab = write_t5_tokenizer(f"{out}/tokenizer-staging/tokenizer_2")
    dev = CONFIGS["dev"]["config"]
    # FLUX's CLIP-L in miniature: the legacy eos_token_id 2 (pooled at the highest id, <|endoftext|>), three
    # heads of 4, hidden = the transformer's pooled_projection_dim, an odd MLP width.
    clip_config = CLIPTextConfig(vocab_size=clip_vocab, hidden_size=dev["pooled_projection_dim"],
                                 intermediate_size=29, num_hidden_layers=2, num_attention_heads=3,
                                 max_position_embeddings=CLIP_TOKENS, hidden_act="quick_gelu",
                                 layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    # T5 v1.1 in miniature: d_model = joint_attention_dim, two heads of 8 (inner 16, not d_model), FLUX's
    # buckets (32, max distance 128, reached at 512 tokens), a vocabulary above the tokenizer's as T5-XXL's is.
    t5_config = T5Config(vocab_size=t5_vocab + 28, d_model=dev["joint_attention_dim"], d_kv=8, d_ff=37,
                         num_layers=2, num_heads=2, relative_attention_num_buckets=32,
                         relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
                         feed_forward_proj="gated-gelu")
    staging = f"{out}/tokenizer-staging"
    text_encoder = randomize_text(CLIPTextModel(clip_config), seed + 3)
    text_encoder_2 = randomize_text(T5EncoderModel(t5_config), seed + 4)
    FluxPipeline(scheduler=flux_scheduler(), vae=tiny_vae(seed + 1),
                 transformer=randomize(FluxTransformer2DModel(**dev), seed).to(torch.bfloat16),
                 text_encoder=text_encoder.to(torch.bfloat16),
                 tokenizer=CLIPTokenizer.from_pretrained(f"{staging}/tokenizer"),
                 text_encoder_2=text_encoder_2.to(torch.bfloat16),
                 tokenizer_2=T5TokenizerFast.from_pretrained(f"{staging}/tokenizer_2")).save_pretrained(path)
    # transformers 5 saves tokenizers in its own layout (tokenizer.json, a bare config): put FLUX's back, and
    # the "text_model." key prefix FLUX's text_encoder carries.
    for name in ("tokenizer", "tokenizer_2"):
        shutil.rmtree(f"{path}/{name}")
        shutil.move(f"{staging}/{name}", f"{path}/{name}")
    os.rmdir(staging)
    file = f"{path}/text_encoder/model.safetensors"
    save_file({"text_model." + k: v for k, v in load_file(file).items()}, file, metadata={"format": "pt"})
    pipe = FluxPipeline.from_pretrained(path, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for name, module in (("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)):
        for (key, p), (_, q) in zip(sorted(module.named_parameters()),
                                    sorted(getattr(pipe, name).named_parameters())):
            assert torch.equal(p.float(), q), f"{name}: {key} did not reload as stored"
    assert pipe.tokenizer_max_length == CLIP_TOKENS

    height, width, steps, guidance = 32, 48, 3, 3.5
    for k, (run, spec) in enumerate(TEXT_RUNS.items()):
        prompts = [spec["prompt"]] if isinstance(spec["prompt"], str) else spec["prompt"]
        negative = spec.get("negative_prompt")
        images_per_prompt = spec["num_images_per_prompt"]
        g = torch.Generator().manual_seed(seed + 10 + k)
        packed = packed_latents(len(prompts) * images_per_prompt, height, width, g)
        tensors = {"latents": packed}
        encoded = [("", prompts)] + ([("negative_", [negative])] if negative else [])
        with torch.no_grad():
            for prefix, texts in encoded:
                embeds, pooled, _ = pipe.encode_prompt(prompt=texts, max_sequence_length=T5_TOKENS)
                tensors[f"{prefix}prompt_embeds"] = embeds
                tensors[f"{prefix}pooled_prompt_embeds"] = pooled
                # The ids transformers gives, as FluxPipeline's two calls ask (the engine must give the same).
                for key, tokenizer, length in (("clip", pipe.tokenizer, CLIP_TOKENS),
                                               ("t5", pipe.tokenizer_2, T5_TOKENS)):
                    tensors[f"{prefix}{key}_input_ids"] = tokenizer(
                        texts, padding="max_length", max_length=length, truncation=True,
                        return_tensors="pt").input_ids
        untruncated = [(len(pipe.tokenizer(p).input_ids), len(pipe.tokenizer_2(p).input_ids)) for p in prompts]
        if run == "truncated":
            assert untruncated[0][0] > CLIP_TOKENS and untruncated[0][1] > T5_TOKENS, untruncated
        else:
            assert all(c <= CLIP_TOKENS and t <= T5_TOKENS for c, t in untruncated), untruncated
        extra = {} if negative is None else {"negative_prompt": negative, "true_cfg_scale": spec["true_cfg_scale"]}
        images = pipe(prompt=spec["prompt"], num_images_per_prompt=images_per_prompt, latents=packed,
                      height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
                      max_sequence_length=T5_TOKENS, output_type="np", **extra).images
        tensors["images"] = torch.from_numpy(images)
        metadata = {"transformers": transformers.__version__, "prompts": json.dumps(prompts),
                    "num_images_per_prompt": str(images_per_prompt), "untruncated_tokens": json.dumps(untruncated),
                    "height": str(height), "width": str(width),
                    "num_inference_steps": str(steps), "guidance_scale": str(guidance),
                    "max_sequence_length": str(T5_TOKENS)}
        if negative is not None:
            metadata.update(negative_prompt=negative, true_cfg_scale=str(spec["true_cfg_scale"]))
        save_file(contiguous(tensors), f"{out}/pipeline-text-run-{run}.safetensors", metadata=header(metadata))


# The scheduler_config.json of FLUX.1 dev and schnell as published (their fields that differ from the defaults).
SCHEDULES = {
    "dev-1024": (dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                      max_image_seq_len=4096), 28, 4096),
    "dev-768x512": (dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                         base_image_seq_len=256, max_image_seq_len=4096), 13, 1536),
    "schnell-1024": (dict(shift=1.0, use_dynamic_shifting=False, base_shift=0.5, max_shift=1.15,
                          base_image_seq_len=256, max_image_seq_len=4096), 4, 4096),
}


def schedules(out):
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
    for name, (config, steps, tokens) in SCHEDULES.items():
        scheduler = FlowMatchEulerDiscreteScheduler(**config)
        sigmas = np.linspace(1.0, 1 / steps, steps)
        mu = calculate_shift(tokens, config["base_image_seq_len"], config["max_image_seq_len"], config["base_shift"],
                             config["max_shift"])
        timesteps, _ = retrieve_timesteps(scheduler, steps, "cpu", sigmas=sigmas, mu=mu)
        save_file({"timesteps": timesteps.to(torch.float32).contiguous(),
                   "sigmas": scheduler.sigmas.to(torch.float32).contiguous()}, f"{out}/schedule-{name}.safetensors",
                  metadata=header({"config": json.dumps(dict(scheduler.config)), "steps": str(steps),
                                   "image_tokens": str(tokens), "mu": repr(mu)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/flux")
    args = p.parse_args()
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    print(json.dumps(header({"transformers": transformers.__version__})))
    for k, (name, spec) in enumerate(CONFIGS.items()):
        forward(args.out, name, spec, 500 + 10 * k)
    pipeline(args.out, 600)
    pipeline_text(args.out, 700)
    schedules(args.out)


if __name__ == "__main__":
    main()
