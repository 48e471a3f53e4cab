"""cache-dit's decisions on FLUX.1's two token streams, for tests/model/flux_cache_test.ts.

A tiny random FluxPipeline (dev layout: guidance embeddings; 3 double- and 5 single-stream blocks, the one
57-block list of cache-dit's FLUX adapter in miniature) runs from fixed packed latents and text embeddings,
uncached and then under cache-dit at each setting of SETTINGS. The settings are written in this engine's
cache option names (src/cache/options.ts) and translated to cache-dit's DBCacheConfig / DBPruneConfig /
TaylorSeerCalibratorConfig below, so the test reads them back and runs the same thing.

Writes under tests/fixtures/flux-cache/:
  pipeline/               the FluxPipeline directory (text encoders null, BF16 transformer, 4-level VAE)
  runs.safetensors        prompt_embeds, pooled_prompt_embeds, latents (packed [1, N, 4C]); for "none" and
                          every setting <name>.images (np output [1, H, W, 3] in [0, 1]). Header: the
                          request (height, width, steps, guidance), "settings" (JSON, our option names),
                          "results" (JSON: per setting cache-dit's cached_steps, residual_diffs per step,
                          null where none was measured, and for DBPrune the per-step lists of block diffs
                          and pruned_blocks), versions and commits.

Thresholds sit between the diffs this random model shows (0.15 to 1.3); the script refuses to write a
fixture where a measured diff lies within MARGIN of the threshold it was compared with (the engine's f32
diff and torch's differ in the fifth digit), or where the runs could not tell a wrong engine from a right
one (check_runs). cache-dit runs here as it is, without patches.

  PYTHONPATH=/work/diffusers/src:/work/cache-dit/src /work/ref-venv/bin/python tools/flux_cache_fixtures.py
"""

import argparse
import json
import os
import shutil

import torch
import cache_dit
import diffusers
from cache_dit import DBCacheConfig, DBPruneConfig, TaylorSeerCalibratorConfig
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from safetensors.torch import save_file

from flux_fixtures import DIFFUSERS_COMMIT, contiguous, randomize

CACHE_DIT_COMMIT = "f86744a"
SEED = 700
HEIGHT, WIDTH, STEPS, GUIDANCE = 48, 64, 14, 3.5
TEXT_TOKENS = 7
MARGIN = 0.002

TRANSFORMER = dict(patch_size=1, in_channels=16, num_layers=3, num_single_layers=5, attention_head_dim=16,
                   num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=12, guidance_embeds=True,
                   axes_dims_rope=(4, 6, 6))


def dbcache(Fn, Bn, threshold, warmup, **more):
    return {"strategy": "dbcache", "Fn": Fn, "Bn": Bn, "residual_diff_threshold": threshold,
            "max_warmup_steps": warmup, "warmup_interval": 1, "max_cached_steps": -1,
            "max_continuous_cached_steps": -1, **more}


def taylorseer(cache_type, encoder, order):
    return dict(enable_taylorseer=True, enable_encoder_taylorseer=encoder, taylorseer_cache_type=cache_type,
                n_derivatives=order)


def dbprune(Fn, Bn, threshold, warmup, **more):
    return {"strategy": "dbprune", "Fn": Fn, "Bn": Bn, "residual_diff_threshold": threshold,
            "max_warmup_steps": warmup, "warmup_interval": 1, "max_pruned_steps": -1, **more}


# TaylorSeer: warmup >= n_derivatives + 3, where the reference's one-step counter lag (its derivatives start
# at its step 2, our step 3; cache-strategies.md) has no effect on the first cached step. Bn > 0 wherever the
# text stream matters: with Bn = 0 nothing reads the text stream after M, so neither its replay nor the
# encoder calibrator could show. The masks' warmup runs past their first 0, which the reference truncates. The
# dynamic DBPrune threshold has 5 prunable blocks: the reference's mean over a step's first 5 diffs is then the
# mean over all, as ours.
MASK = [1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1]
SETTINGS = {
    "F1B0-0.56": dbcache(1, 0, 0.56, 2),
    "F1B0-0.62": dbcache(1, 0, 0.62, 2),
    "F1B0-0.8": dbcache(1, 0, 0.8, 2),
    "F2B2-0.7": dbcache(2, 2, 0.7, 2),
    "F2B2-0.8": dbcache(2, 2, 0.8, 2),
    "F1B3-0.9-taylorseer": dbcache(1, 3, 0.9, 5, **taylorseer("residual", True, 2)),
    "F1B3-0.9-taylorseer-image-only": dbcache(1, 3, 0.9, 5, **taylorseer("residual", False, 2)),
    "F1B3-0.9-taylorseer-hidden-states": dbcache(1, 3, 0.9, 4, **taylorseer("hidden_states", True, 1)),
    "F1B1-mask-static": dbcache(1, 1, 0.7, 5, steps_computation_mask=MASK, steps_computation_policy="static"),
    "F1B1-mask-dynamic": dbcache(1, 1, 0.7, 5, steps_computation_mask=MASK, steps_computation_policy="dynamic"),
    "dbprune-F1B1-0.32": dbprune(1, 1, 0.32, 2),
    "dbprune-F1B2-0.26-dynamic": dbprune(1, 2, 0.26, 2, enable_dynamic_prune_threshold=True),
    "dbprune-F1B1-0.36-taylorseer": dbprune(1, 1, 0.36, 4, **taylorseer("residual", True, 1)),
}


def cache_dit_configs(o):
    """Our option names -> cache-dit's (cache_config, calibrator_config)."""
    common = dict(Fn_compute_blocks=o["Fn"], Bn_compute_blocks=o["Bn"],
                  residual_diff_threshold=o["residual_diff_threshold"], max_warmup_steps=o["max_warmup_steps"],
                  warmup_interval=o["warmup_interval"], enable_separate_cfg=False, num_inference_steps=STEPS)
    if o["strategy"] == "dbprune":
        config = DBPruneConfig(**common, max_cached_steps=o["max_pruned_steps"],
                               enable_dynamic_prune_threshold=o.get("enable_dynamic_prune_threshold", False))
    else:
        config = DBCacheConfig(**common, max_cached_steps=o["max_cached_steps"],
                               max_continuous_cached_steps=o["max_continuous_cached_steps"],
                               steps_computation_mask=o.get("steps_computation_mask"),
                               steps_computation_policy=o.get("steps_computation_policy", "dynamic"))
    calibrator = None
    if o.get("enable_taylorseer"):
        calibrator = TaylorSeerCalibratorConfig(enable_calibrator=True,
                                                enable_encoder_calibrator=o["enable_encoder_taylorseer"],
                                                calibrator_cache_type=o["taylorseer_cache_type"],
                                                taylorseer_order=o["n_derivatives"])
    return config, calibrator


def build_pipeline(path):
    transformer = randomize(FluxTransformer2DModel(**TRANSFORMER), SEED)
    vae = randomize(AutoencoderKL(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                  norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.3611,
                                  shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
                                  sample_size=32), SEED + 1)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    FluxPipeline(scheduler=scheduler, vae=vae, transformer=transformer.to(torch.bfloat16), text_encoder=None,
                 tokenizer=None, text_encoder_2=None, tokenizer_2=None).save_pretrained(path)
    # The reference runs in float32 on the stored (BF16-rounded) weights, as the engine does.
    return FluxPipeline.from_pretrained(path, torch_dtype=torch.float32, text_encoder=None, tokenizer=None,
                                        text_encoder_2=None, tokenizer_2=None)


def inputs():
    g = torch.Generator().manual_seed(SEED + 2)
    prompt_embeds = torch.randn((1, TEXT_TOKENS, TRANSFORMER["joint_attention_dim"]), generator=g)
    pooled = torch.randn((1, TRANSFORMER["pooled_projection_dim"]), generator=g)
    # prepare_latents: randn [B, C, 2 * (H // 16), 2 * (W // 16)], packed 2x2 into [B, N, 4C].
    latents = torch.randn((1, 4, 2 * (HEIGHT // 16), 2 * (WIDTH // 16)), generator=g)
    packed = FluxPipeline._pack_latents(latents, 1, 4, latents.shape[2], latents.shape[3])
    return prompt_embeds, pooled, packed


def run(pipe, prompt_embeds, pooled, latents):
    """np images [1, H, W, 3] in [0, 1]."""
    images = pipe(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, latents=latents.clone(),
                  height=HEIGHT, width=WIDTH, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                  output_type="np").images
    return torch.from_numpy(images)


def dynamic_threshold(o, before):
    """cache-dit's PrunedContext threshold given the block diffs already measured in the step (first 5)."""
    t = o["residual_diff_threshold"]
    positive = [d for d in before[:5] if d > 0]
    if not o.get("enable_dynamic_prune_threshold") or not positive:
        return t
    relaxed = sum(positive) / len(positive) * 1.25
    return max(relaxed, t) if relaxed < 2 * t else t


def check_margins(name, o, diffs):
    for step, measured in diffs.items():
        for j, d in enumerate(measured if isinstance(measured, list) else [measured]):
            t = dynamic_threshold(o, measured[:j]) if isinstance(measured, list) else o["residual_diff_threshold"]
            if abs(d - t) < MARGIN:
                raise SystemExit(f"{name}: step {step} diff {d:.5f} is within {MARGIN} of threshold {t:.5f}")


def cached(pipe, name, o, args):
    config, calibrator = cache_dit_configs(o)
    cache_dit.enable_cache(pipe, cache_config=config, calibrator_config=calibrator)
    images = run(pipe, *args)
    stats = cache_dit.summary(pipe, logging=False)[0]
    cache_dit.disable_cache(pipe)
    diffs = {int(k): v for k, v in stats.residual_diffs.items()}
    check_margins(name, o, diffs)
    result = {"cached_steps": list(stats.cached_steps),
              "residual_diffs": [diffs.get(s) for s in range(STEPS)]}
    if o["strategy"] == "dbprune":
        result["pruned_blocks"] = list(stats.pruned_blocks)
    print(name, json.dumps(result))
    return images, result


def check_runs(tensors, results):
    """The fixture must be able to tell: some run caches several steps, every run caches and computes after
    its warmup, and the encoder calibrator changes the image (it would not with Bn = 0)."""
    for name, r in results.items():
        if not r["cached_steps"] or len(r["cached_steps"]) == STEPS - SETTINGS[name]["max_warmup_steps"]:
            raise SystemExit(f"{name}: caches {r['cached_steps']}; both paths must run after the warmup")
    if max(len(r["cached_steps"]) for r in results.values()) < 5:
        raise SystemExit("no run caches 5 steps or more")
    for a, b in [("F1B3-0.9-taylorseer", "F1B3-0.9-taylorseer-image-only"), ("F2B2-0.7", "none")]:
        moved = (tensors[f"{a}.images"] - tensors[f"{b}.images"]).abs().max().item()
        if moved < 5e-3:
            raise SystemExit(f"{a} and {b} give images within {moved:.2e}: the setting shows nothing")


def versions():
    return {"script": "tools/flux_cache_fixtures.py", "torch": torch.__version__,
            "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", "cache_dit": CACHE_DIT_COMMIT}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/fixtures/flux-cache")
    out = p.parse_args().out
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    print(json.dumps(versions()))
    pipe = build_pipeline(f"{out}/pipeline")
    args = inputs()
    prompt_embeds, pooled, packed = args
    tensors = {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled, "latents": packed}
    tensors["none.images"] = run(pipe, *args)
    results = {}
    for name, o in SETTINGS.items():
        tensors[f"{name}.images"], results[name] = cached(pipe, name, o, args)
    check_runs(tensors, results)
    metadata = {**versions(), "height": str(HEIGHT), "width": str(WIDTH), "num_inference_steps": str(STEPS),
                "guidance_scale": str(GUIDANCE), "settings": json.dumps(SETTINGS), "results": json.dumps(results)}
    save_file(contiguous(tensors), f"{out}/runs.safetensors", metadata=metadata)


if __name__ == "__main__":
    main()
