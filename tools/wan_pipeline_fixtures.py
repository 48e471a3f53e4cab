"""A whole tiny Wan2.1 WanPipeline run, and cache-dit's decisions on it per CFG branch, for tests/model/wan_*.

A tiny random WanPipeline (WanTransformer3DModel of 4 blocks, the block list cache-dit's Wan adapter caches,
with ForwardPattern_2; a 2-level AutoencoderKLWan; Wan2.1's UniPCMultistepScheduler config) runs from fixed
latents and prompt embeddings with classifier-free guidance, whose conditional and unconditional passes are
separate transformer forwards. It runs uncached, with FlowMatchEuler in UniPC's place, and then under cache-dit
with separate CFG caches (enable_separate_cfg) at each setting of SETTINGS. Settings are written in this
engine's cache option names (src/cache/options.ts) and translated to cache-dit's DBCacheConfig below.

Writes under tests/fixtures/wan/:
  pipeline/                 the WanPipeline directory (text_encoder and tokenizer null)
  pipeline-run.safetensors  prompt_embeds [1, L, text_dim] (zero past the prompt's length, as encode_prompt
                            leaves them), negative_prompt_embeds, latents [1, C, F, h, w] as prepare_latents
                            draws them, "none.video" (np output [1, frames, H, W, 3] in [0, 1]),
                            "flow-match-euler.video", and per setting <name>.video. Header: the request
                            (height, width, num_frames, steps, guidance), "settings" (JSON, our option names),
                            "results" (JSON: per setting cache-dit's cached_steps and residual_diffs per step of
                            the conditional branch, cfg_cached_steps and cfg_residual_diffs of the
                            unconditional one, null where none was measured), versions and commits.

Thresholds sit between the diffs this random model shows; the script refuses a fixture where a measured diff lies
within MARGIN of its threshold, or where the two branches cache the same steps in every setting (the fixture
could then not tell shared state from separate state). cache-dit runs here as it is, without patches.

  PYTHONPATH=/work/diffusers/src:/work/cache-dit/src /work/ref-venv/bin/python tools/wan_pipeline_fixtures.py
"""

import argparse
import json
import os
import shutil

import torch
import cache_dit
import diffusers
from cache_dit import DBCacheConfig
from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanPipeline,
                       WanTransformer3DModel)
from safetensors.torch import save_file

from diffusers_fixtures import DIFFUSERS_COMMIT, contiguous, randomize
from wan_configs import UNIPC

CACHE_DIT_COMMIT = "f86744a"
SEED = 1200
HEIGHT, WIDTH, FRAMES, STEPS, GUIDANCE = 32, 48, 9, 12, 5.0
TEXT_TOKENS, PROMPT_TOKENS, NEGATIVE_TOKENS = 10, 6, 3
MARGIN = 0.002

TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
                   out_channels=4, text_dim=24, freq_dim=32, ffn_dim=48, num_layers=4, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=32)
# Wan2.1's layout in miniature (x8 spatially, x4 in time, as its scale_factor_* say), few channels.
VAE = dict(base_dim=6, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
           temperal_downsample=[False, True, True],
           latents_mean=[0.11, -0.23, 0.05, 0.31], latents_std=[1.7, 0.6, 2.3, 1.1])



def dbcache(Fn, Bn, threshold, warmup, **more):
    return {"strategy": "dbcache", "Fn": Fn, "Bn": Bn, "residual_diff_threshold": threshold,
            "max_warmup_steps": warmup, "warmup_interval": 1, "max_cached_steps": -1,
            "max_continuous_cached_steps": -1, "enable_separate_cfg": True, "cfg_compute_first": False,
            "cfg_diff_compute_separate": True, **more}


SETTINGS = {
    "F1B0-low": dbcache(1, 0, 0.37, 3),
    "F1B0-high": dbcache(1, 0, 0.565, 3),
    "F1B1-mid": dbcache(1, 1, 0.55, 3),
    # The unconditional pass decides on the conditional pass' diff of the same step.
    "F1B0-shared-diff": dbcache(1, 0, 0.565, 3, cfg_diff_compute_separate=False),
}


def cache_dit_config(o):
    return DBCacheConfig(Fn_compute_blocks=o["Fn"], Bn_compute_blocks=o["Bn"],
                         residual_diff_threshold=o["residual_diff_threshold"], max_warmup_steps=o["max_warmup_steps"],
                         warmup_interval=o["warmup_interval"], max_cached_steps=o["max_cached_steps"],
                         max_continuous_cached_steps=o["max_continuous_cached_steps"],
                         enable_separate_cfg=o["enable_separate_cfg"], cfg_compute_first=o["cfg_compute_first"],
                         cfg_diff_compute_separate=o["cfg_diff_compute_separate"], num_inference_steps=STEPS)


def build_pipeline(path):
    transformer = randomize(WanTransformer3DModel(**TRANSFORMER), SEED)
    vae = randomize(AutoencoderKLWan(**VAE), SEED + 1)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, transformer=transformer.eval(), vae=vae.eval(),
                       scheduler=UniPCMultistepScheduler(**UNIPC))
    # F32 weights, so the pipeline that runs is the one saved (reloading needs accelerate, absent here).
    pipe.save_pretrained(path)
    return pipe


def inputs(pipe):
    g = torch.Generator().manual_seed(SEED + 2)

    def embeds(length):
        e = torch.randn((1, TEXT_TOKENS, TRANSFORMER["text_dim"]), generator=g)
        e[:, length:] = 0
        return e

    prompt_embeds, negative = embeds(PROMPT_TOKENS), embeds(NEGATIVE_TOKENS)
    latent_frames = (FRAMES - 1) // pipe.vae_scale_factor_temporal + 1
    shape = (1, TRANSFORMER["in_channels"], latent_frames, HEIGHT // pipe.vae_scale_factor_spatial,
             WIDTH // pipe.vae_scale_factor_spatial)
    return prompt_embeds, negative, torch.randn(shape, generator=g)


def run(pipe, prompt_embeds, negative, latents):
    """np video [1, frames, H, W, 3] in [0, 1]."""
    frames = pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative, latents=latents.clone(),
                  height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=STEPS,
                  guidance_scale=GUIDANCE, output_type="np").frames
    return torch.from_numpy(frames)


def per_step(diffs):
    measured = {int(k): v for k, v in diffs.items()}
    return [measured.get(s) for s in range(STEPS)]


def check_margins(name, o, result):
    for branch in ("residual_diffs", "cfg_residual_diffs"):
        for step, d in enumerate(result[branch]):
            if d is not None and d >= 0 and abs(d - o["residual_diff_threshold"]) < MARGIN:
                raise SystemExit(f"{name}: {branch} step {step} diff {d:.5f} is within {MARGIN} of the threshold")


def cached(pipe, name, o, args):
    cache_dit.enable_cache(pipe, cache_config=cache_dit_config(o))
    video = run(pipe, *args)
    stats = cache_dit.summary(pipe, logging=False)[0]
    cache_dit.disable_cache(pipe)
    result = {"cached_steps": list(stats.cached_steps), "residual_diffs": per_step(stats.residual_diffs),
              "cfg_cached_steps": list(stats.cfg_cached_steps),
              "cfg_residual_diffs": per_step(stats.cfg_residual_diffs)}
    check_margins(name, o, result)
    print(name, json.dumps(result))
    return video, result


def check_runs(results):
    """Every setting caches something after its warmup, and some setting caches different steps per branch."""
    for name, r in results.items():
        if not r["cached_steps"] and not r["cfg_cached_steps"]:
            raise SystemExit(f"{name}: caches {r['cached_steps']} / cfg {r['cfg_cached_steps']}")
    if all(r["cached_steps"] == r["cfg_cached_steps"] for r in results.values()):
        raise SystemExit("both branches cache the same steps in every setting")


def versions():
    return {"script": "tools/wan_pipeline_fixtures.py", "torch": torch.__version__,
            "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", "cache_dit": CACHE_DIT_COMMIT}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/wan")
    out = p.parse_args().out
    os.makedirs(out, exist_ok=True)
    if os.path.exists(f"{out}/pipeline"):
        shutil.rmtree(f"{out}/pipeline")
    print(json.dumps(versions()))
    torch.manual_seed(SEED)
    pipe = build_pipeline(f"{out}/pipeline")
    args = inputs(pipe)
    tensors = {"prompt_embeds": args[0], "negative_prompt_embeds": args[1], "latents": args[2]}
    tensors["none.video"] = run(pipe, *args)
    unipc = pipe.scheduler
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=UNIPC["flow_shift"])
    tensors["flow-match-euler.video"] = run(pipe, *args)
    pipe.scheduler = unipc
    results = {}
    for name, o in SETTINGS.items():
        tensors[f"{name}.video"], results[name] = cached(pipe, name, o, args)
    check_runs(results)
    metadata = {**versions(), "height": str(HEIGHT), "width": str(WIDTH), "num_frames": str(FRAMES),
                "num_inference_steps": str(STEPS), "guidance_scale": str(GUIDANCE),
                "settings": json.dumps(SETTINGS), "results": json.dumps(results)}
    save_file(contiguous(tensors), f"{out}/pipeline-run.safetensors", metadata=metadata)


if __name__ == "__main__":
    main()
