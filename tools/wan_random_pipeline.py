"""A Wan2.1-T2V-1.3B WanPipeline directory at full size with random weights, for the benchmarks.

No model hub is reachable here, so the real checkpoint never arrives; speed and memory depend on the shapes
only. This writes Wan-AI/Wan2.1-T2V-1.3B-Diffusers' published configs (transformer: 30 blocks of width 1536,
12 heads, ffn 8960, text_dim 4096; AutoencoderKLWan with its defaults, Wan2.1's latents_mean / latents_std;
UniPCMultistepScheduler with flow_shift 3.0) with seeded random weights, the transformer in BF16 (2.6 GB, as
Wan ships it) and the VAE in F32 (as WanPipeline runs it). The text encoder (UMT5-XXL, 11 GB) is saved as
null: the benchmarks feed random prompt embeddings [1, 512, 4096].

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/wan_random_pipeline.py --out /work/wan-1.3b
"""

import argparse
import json

import torch
import diffusers
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

from wan_configs import UNIPC

TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                   out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
                   rope_max_seq_len=1024)
LATENTS_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517,
                -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
               1.6382, 1.1253, 2.8251, 1.916]


def randomize(module, seed):
    """Weights N(0, 1/fan_in), biases and the modulation tables small, norm scales near 1 (in place, per
    parameter: a 1.3B model does not fit twice in f32 here)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1:
                p.copy_((1 + 0.1 * torch.randn(p.shape, generator=g)) if "norm" in name
                        else 0.05 * torch.randn(p.shape, generator=g))
            elif "scale_shift_table" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return module


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=13)
    out = p.parse_args().out
    print(json.dumps({"script": "tools/wan_random_pipeline.py", "torch": torch.__version__,
                      "diffusers": diffusers.__version__}))
    transformer = randomize(WanTransformer3DModel(**TRANSFORMER), 13).to(torch.bfloat16)
    vae = randomize(AutoencoderKLWan(latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD), 14)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=vae,
                       scheduler=UniPCMultistepScheduler(**UNIPC))
    pipe.save_pretrained(out, max_shard_size="1GB")
    print(f"wrote {out}: transformer {sum(p.numel() for p in transformer.parameters()) / 1e9:.3f}B parameters "
          f"(BF16), vae {sum(p.numel() for p in vae.parameters()) / 1e6:.1f}M (F32)")


if __name__ == "__main__":
    main()
