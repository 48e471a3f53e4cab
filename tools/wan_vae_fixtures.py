"""diffusers' AutoencoderKLWan decoder (Wan2.1) at tiny random configs, for tests/model/wan_vae_test.ts.

Writes under tests/fixtures/wan/:
  vae-<name>/                        AutoencoderKLWan directories (save_pretrained; weights in the config's dtype),
                                     the weights file keeping only the decoder's tensors: the engine decodes only,
                                     and the encoder's would double the file (diffusers still loads the directory,
                                     initialising the encoder)
  vae-<name>-decode-<F>.safetensors  for F latent frames:
      normalized        latents as the transformer leaves them [B, z_dim, F, h, w]
      z                 WanPipeline's de-normalisation of them, latents / (1 / latents_std) + latents_mean,
                        which is what vae.decode takes
      post_quant_conv   post_quant_conv(z), all frames at once as _decode runs it
      chunk<i>.<stage>  the decoder's output after conv_in, mid_block, up_blocks.<k> and conv_out (before the
                        clamp) while it decodes latent frame i, for the first and the last chunk
      sample            vae.decode(z).sample [B, 3, 1 + r (F - 1), H, W], clamped to [-1, 1]
    Header: script, versions, the config name, the chunks recorded.

Every parameter is seeded noise (N(0, 1/fan_in) weights, small biases, norm gammas 1 + noise): with diffusers'
ones-and-zeros initialisation a wrong gamma or a dropped bias would still match. The configs:
  a  Wan2.1's layout at a tiny width: dim_mult [1, 2, 2, 2], temperal_downsample [False, True, True] (two
     upsample3d levels, then an upsample2d, x8 spatial and x4 temporal), one resnet per block, B = 1, 2x3 latents,
     F32 weights, F = 1, 2 and 4 (one, two and four chunks).
  b  three levels with temperal_downsample [True, False] (so the temporal upsampling is on the second up block,
     which only the reversal finds), decoder_base_dim != base_dim, two resnets per block, odd z_dim 5, B = 2
     (the batch inside a frame, and time_conv's frame split with B > 1), 3x4 latents, BF16 weights (the reference
     runs on the stored, rounded weights), F = 1 and 3.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/wan_vae_fixtures.py
"""

import argparse
import os
import shutil

import torch
import diffusers
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file

from diffusers_fixtures import DIFFUSERS_COMMIT, contiguous, randomize, stored

CONFIGS = {
    "a": dict(config=dict(base_dim=6, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
                          temperal_downsample=[False, True, True], latents_mean=[0.31, -0.52, 0.07, 1.13],
                          latents_std=[1.9, 0.45, 2.6, 1.2]),
              dtype=torch.float32, batch=1, latent=(2, 3), frames=(1, 2, 4)),
    "b": dict(config=dict(base_dim=4, decoder_base_dim=6, z_dim=5, dim_mult=[1, 2, 2], num_res_blocks=2,
                          attn_scales=[], temperal_downsample=[True, False],
                          latents_mean=[-0.8, 0.25, 0.6, -0.1, 0.45], latents_std=[2.2, 0.7, 1.4, 3.1, 0.9]),
              dtype=torch.bfloat16, batch=2, latent=(3, 4), frames=(1, 3)),
}
MAX_FILE_BYTES = 320_000


def randomize_wan(model, seed):
    """randomize(), then the RMS norms' gammas ([C, 1, 1(, 1)], which randomize takes for weights) as 1 + noise."""
    randomize(model, seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith(".gamma"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
    return model


def keep_decoder_weights(path):
    weights = f"{path}/diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v for k, v in tensors.items() if k.startswith(("decoder.", "post_quant_conv."))}, weights,
              metadata={"format": "pt"})


def record_stages(model, chunks):
    """Forward hooks keeping the decoder's stage outputs of the chunks in `chunks` (one decoder call per chunk);
    returns the stages and the hook handles."""
    stages, calls, handles = {}, [0], []
    dec = model.decoder
    handles.append(model.post_quant_conv.register_forward_hook(
        lambda m, i, o: stages.__setitem__("post_quant_conv", o)))

    def keep(name):
        def hook(module, inputs, output):
            if calls[0] in chunks:
                stages[f"chunk{calls[0]}.{name}"] = output
        return hook

    named = [("conv_in", dec.conv_in), ("mid_block", dec.mid_block), ("conv_out", dec.conv_out),
             *((f"up_blocks.{k}", block) for k, block in enumerate(dec.up_blocks))]
    handles += [module.register_forward_hook(keep(stage)) for stage, module in named]
    handles.append(dec.register_forward_hook(lambda m, i, o: calls.__setitem__(0, calls[0] + 1)))
    return stages, handles


def decode_fixture(out, name, spec, seed):
    model = randomize_wan(AutoencoderKLWan(**spec["config"]), seed)
    model = stored(AutoencoderKLWan, model, f"{out}/vae-{name}", spec["dtype"])
    keep_decoder_weights(f"{out}/vae-{name}")
    c = model.config
    for frames in spec["frames"]:
        g = torch.Generator().manual_seed(seed + frames)
        normalized = torch.randn((spec["batch"], c.z_dim, frames, *spec["latent"]), generator=g)
        # WanPipeline's arithmetic, in its order: the reciprocal of the std first, then a division by it.
        mean = torch.tensor(c.latents_mean).view(1, c.z_dim, 1, 1, 1)
        std_inv = 1.0 / torch.tensor(c.latents_std).view(1, c.z_dim, 1, 1, 1)
        z = normalized / std_inv + mean
        chunks = sorted({0, frames - 1})
        stages, handles = record_stages(model, chunks)
        with torch.no_grad():
            sample = model.decode(z).sample
        for handle in handles:
            handle.remove()
        path = f"{out}/vae-{name}-decode-{frames}.safetensors"
        save_file(contiguous({"normalized": normalized, "z": z, "sample": sample, **stages}), path,
                  metadata={"script": "tools/wan_vae_fixtures.py", "torch": torch.__version__,
                            "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", "config": name,
                            "dtype": str(spec["dtype"]), "chunks": ",".join(map(str, chunks))})
        size = os.path.getsize(path)
        inside = ((sample > -1) & (sample < 1)).float().mean().item()
        print(f"{path}: {size} bytes, sample {list(sample.shape)}, {inside:.0%} inside (-1, 1)")
        if size > MAX_FILE_BYTES:
            raise SystemExit(f"{path} is {size} bytes, over {MAX_FILE_BYTES}: make the config smaller")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/wan")
    args = p.parse_args()
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__} ({DIFFUSERS_COMMIT})")
    torch.manual_seed(0)
    for k, (name, spec) in enumerate(CONFIGS.items()):
        shutil.rmtree(f"{args.out}/vae-{name}", ignore_errors=True)
        os.makedirs(args.out, exist_ok=True)
        decode_fixture(args.out, name, spec, 1300 + 10 * k)


if __name__ == "__main__":
    main()
