"""A full-size DiT-XL/2-256 pipeline directory with random weights in BF16, and diffusers' timings on it.

No real checkpoint is reachable from these machines, so the speed and memory benchmarks of the real model
family run on random weights of the real shapes: DiTTransformer2DModel as facebook/DiT-XL-2-256 configures it
(28 blocks, 1152 wide, 16 heads x 72, patch 2, learned sigma, 1000 classes) and the SD AutoencoderKL
(block_out_channels 128, 256, 512, 512; 2 layers per block; 32 groups) that DiT decodes with, in the
save_pretrained layout with a DDIM scheduler and an id2label. About 1.5 GB; it is not committed.
--narrow keeps DiT-XL/2's 28 blocks, 16 heads, patch 2 and 256 tokens but makes each head 8 wide (128 in all)
and the VAE 4 levels of 16-32 channels: a model of XL/2's shape that a software adapter runs in seconds per
step, for the cache benchmark (deno task bench --model).

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/dit_random_pipeline.py --out /work/dit-xl-2-random
  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/dit_random_pipeline.py --narrow --out /work/dit-xl-2-narrow
  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/dit_random_pipeline.py --bench /work/dit-xl-2-random

--bench loads that directory in float32 (the BF16 weights widened, as the engine computes) and prints one JSON
line: seconds of one guided transformer forward at batch 2 (256 tokens) and of the VAE decode of a
[1, 4, 32, 32] latent, medians of --repeat runs after a warm-up, with the torch version and thread count.
diffusers is used at commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 (see references.md).
"""

import argparse
import json
import statistics
import time

import torch
import diffusers
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

DIT_XL_2_256 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                    sample_size=32, patch_size=2, num_embeds_ada_norm=1000)
SD_VAE = dict(latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              scaling_factor=0.18215, sample_size=256)


def randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("bias"):
                p.copy_(0.02 * noise)
            elif p.ndim == 1:
                p.copy_(1 + 0.05 * noise)
            elif "embedding_table" in name:
                p.copy_(noise)
            else:
                p.copy_(noise / (p[0].numel() ** 0.5))
    return module


NARROW = dict(attention_head_dim=8)
NARROW_VAE = dict(block_out_channels=(16, 32, 32, 32), norm_num_groups=8)


def write(out, narrow):
    transformer = randomize(DiTTransformer2DModel(**{**DIT_XL_2_256, **(NARROW if narrow else {})}), 1)
    vae = randomize(AutoencoderKL(**{**SD_VAE, **(NARROW_VAE if narrow else {})}), 2)
    transformer, vae = transformer.to(torch.bfloat16), vae.to(torch.bfloat16)
    DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler()).save_pretrained(out)
    index = json.load(open(f"{out}/model_index.json"))
    index["id2label"] = {str(i): f"class {i}" for i in range(1000)}
    json.dump(index, open(f"{out}/model_index.json", "w"), indent=2)
    print(json.dumps({"out": out, "diffusers": diffusers.__version__, "torch": torch.__version__}))


def median_seconds(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(path, repeat):
    transformer = DiTTransformer2DModel.from_pretrained(f"{path}/transformer", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(f"{path}/vae", torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, 4, 32, 32), generator=g)
    t = torch.tensor([500, 500])
    labels = torch.tensor([207, 1000])
    z = torch.randn((1, 4, 32, 32), generator=g)
    with torch.no_grad():
        step = median_seconds(lambda: transformer(x, timestep=t, class_labels=labels), repeat)
        decode = median_seconds(lambda: vae.decode(z), repeat)
    print(json.dumps({"transformer_step_seconds": step, "vae_decode_seconds": decode, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "diffusers": diffusers.__version__}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--bench")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--narrow", action="store_true")
    args = p.parse_args()
    if args.out:
        write(args.out, args.narrow)
    if args.bench:
        bench(args.bench, args.repeat)


if __name__ == "__main__":
    main()
