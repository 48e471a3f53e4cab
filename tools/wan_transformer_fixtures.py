"""Wan2.1 text-to-video transformer reference outputs of diffusers' own WanTransformer3DModel at tiny random
configs, for tests/model/wan_transformer_test.ts.

Writes under tests/fixtures/wan/ (only these paths; other Wan fixtures there are left alone):
  transformer-<name>/               WanTransformer3DModel directories (save_pretrained layout)
  transformer-<name>-forward.safetensors
                                    the forward's inputs (hidden_states [B, C, F, H, W], timestep [B] in the
                                    scheduler's 0..1000 units, one value per sample, encoder_hidden_states),
                                    every stage: patch_embedding (as tokens [B, N, D]), temb, timestep_proj
                                    [B, 6D], text_embedder [B, Nt, D], block.<k> (the token stream after each
                                    block), norm_out (proj_out's input), and sample [B, C_out, F, H, W]

Weights are seeded noise, scale_shift_tables included (tools/diffusers_fixtures.py's randomize: diffusers'
zero or near-zero initialisations would hide a wrong chunk order). Config "b" is stored BF16; its reference
runs in float32 from the stored (rounded) weights.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/wan_transformer_fixtures.py
"""

import argparse
import json
import os
import shutil

import torch
import diffusers
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file, save_file

from diffusers_fixtures import DIFFUSERS_COMMIT, contiguous, randomize


def header(extra):
    return {"script": "tools/wan_transformer_fixtures.py", "torch": torch.__version__,
            "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", **extra}


CONFIGS = {
    # Two heads of 16 (RoPE split t 8, h 4, w 4), affine norm2, F32; 3 latent frames of 8x12 (a 4x6 token grid).
    # ffn_dim 96 > batch * dim: the test can lower the binding limit below one sample's feed-forward hidden
    # while every other tensor still fits, so that the feed-forward runs in chunks of rows.
    "a": dict(config=dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
                          out_channels=4, text_dim=24, freq_dim=32, ffn_dim=96, num_layers=2, cross_attn_norm=True,
                          qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64),
              dtype=torch.float32, latent=(3, 8, 12), text=5, timestep=(937.5, 301.25)),
    # Three heads of 24 (RoPE split 8, 8, 8), no norm2 (cross_attn_norm false), 3 -> 5 channels, eps 1e-5,
    # BF16 weights; 2 latent frames of 6x10 (a 3x5 token grid), an odd text length.
    "b": dict(config=dict(patch_size=(1, 2, 2), num_attention_heads=3, attention_head_dim=24, in_channels=3,
                          out_channels=5, text_dim=20, freq_dim=16, ffn_dim=40, num_layers=2, cross_attn_norm=False,
                          qk_norm="rms_norm_across_heads", eps=1e-5, rope_max_seq_len=32),
              dtype=torch.bfloat16, latent=(2, 6, 10), text=7, timestep=(999.0, 12.75)),
}


def forward_stages(model, inputs):
    """model(**inputs).sample and every stage the test compares; the hooks only record and are removed again."""
    stages = {}

    def patches(module, args, output):
        stages["patch_embedding"] = output.flatten(2).transpose(1, 2)

    def conditions(module, args, outputs):
        stages["temb"], stages["timestep_proj"], stages["text_embedder"], _ = outputs

    def block_output(k):
        return lambda module, args, output: stages.__setitem__(f"block.{k}", output)

    handles = [model.patch_embedding.register_forward_hook(patches),
               model.condition_embedder.register_forward_hook(conditions),
               model.proj_out.register_forward_pre_hook(lambda m, args: stages.__setitem__("norm_out", args[0]))]
    handles += [block.register_forward_hook(block_output(k)) for k, block in enumerate(model.blocks)]
    try:
        with torch.no_grad():
            stages["sample"] = model(**inputs).sample
    finally:
        for handle in handles:
            handle.remove()
    return stages


def forward(out, name, spec, seed):
    path = f"{out}/transformer-{name}"
    if os.path.exists(path):
        shutil.rmtree(path)
    randomize(WanTransformer3DModel(**spec["config"]), seed).to(spec["dtype"]).save_pretrained(path)
    # from_pretrained refuses keep_in_fp32_modules without accelerate's low_cpu_mem_usage: load the stored
    # tensors into a float32 model instead (strict, so every key is the stored one).
    model = WanTransformer3DModel.from_config(WanTransformer3DModel.load_config(path))
    stored = load_file(f"{path}/diffusion_pytorch_model.safetensors")
    model.load_state_dict({k: v.to(torch.float32) for k, v in stored.items()}, strict=True)
    model = model.to(torch.float32).eval()
    c = model.config
    g = torch.Generator().manual_seed(seed + 1)
    frames, height, width = spec["latent"]
    batch = len(spec["timestep"])
    inputs = {
        "hidden_states": torch.randn((batch, c.in_channels, frames, height, width), generator=g),
        "timestep": torch.tensor(spec["timestep"], dtype=torch.float32),
        "encoder_hidden_states": torch.randn((batch, spec["text"], c.text_dim), generator=g),
    }
    stages = forward_stages(model, inputs)
    assert stages["sample"].shape == (batch, c.out_channels, frames, height, width), stages["sample"].shape
    save_file(contiguous({**inputs, **stages}), f"{path}-forward.safetensors",
              metadata=header({"component": f"transformer-{name}", "dtype": str(spec["dtype"]),
                               "latent": json.dumps(spec["latent"])}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/wan")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(json.dumps(header({})))
    # Loading into float32 after a BF16 save warns about keep_in_fp32_modules each time; nothing is kept in
    # another dtype here.
    diffusers.utils.logging.set_verbosity_error()
    for k, (name, spec) in enumerate(CONFIGS.items()):
        forward(args.out, name, spec, 800 + 10 * k)


if __name__ == "__main__":
    main()
