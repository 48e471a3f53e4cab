"""diffusers' own MagCache on the tiny FLUX pipeline of tools/flux_cache_fixtures.py, for
tests/model/flux_magcache_test.ts.

Loads tests/fixtures/flux-cache/pipeline and its inputs (runs.safetensors: prompt_embeds, pooled_prompt_embeds,
packed latents, the request in its header), then:
  1. runs MagCacheConfig(calibrate=True): the magnitude ratios diffusers prints at the end of the run;
  2. runs MagCache inference from those ratios at each setting of SETTINGS (diffusers' option names, which the
     engine keeps), recording which steps diffusers skipped (the head block's norm1 does not run on a skipped
     step) and the images.
Writes tests/fixtures/flux-cache/magcache.safetensors: <name>.images for every setting; header: "ratios" (JSON
list), "settings" (JSON), "skipped" (JSON: per setting, the skipped steps), versions.
The script refuses settings that skip nothing or everything after the retention steps.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/magcache_fixtures.py
"""

import contextlib
import io
import json

import diffusers
import torch
from diffusers import FluxPipeline
from diffusers.hooks import MagCacheConfig
from safetensors import safe_open
from safetensors.torch import save_file

from flux_fixtures import DIFFUSERS_COMMIT, contiguous

DIR = "tests/fixtures/flux-cache"
SETTINGS = {
    "t0.06-k3": dict(threshold=0.06, max_skip_steps=3, retention_ratio=0.2),
    "t0.3-k2": dict(threshold=0.3, max_skip_steps=2, retention_ratio=0.1),
}


def load_inputs():
    with safe_open(f"{DIR}/runs.safetensors", "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in ["prompt_embeds", "pooled_prompt_embeds", "latents"]}
    request = dict(height=int(meta["height"]), width=int(meta["width"]),
                   num_inference_steps=int(meta["num_inference_steps"]), guidance_scale=float(meta["guidance_scale"]))
    return tensors, request


def run(pipe, tensors, request):
    images = pipe(prompt_embeds=tensors["prompt_embeds"], pooled_prompt_embeds=tensors["pooled_prompt_embeds"],
                  latents=tensors["latents"].clone(), output_type="np", **request).images
    return torch.from_numpy(images)


def calibrate(pipe, tensors, request):
    pipe.transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=request["num_inference_steps"]))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run(pipe, tensors, request)
    pipe.transformer.disable_cache()
    line = [l for l in printed.getvalue().splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def skipping_run(pipe, tensors, request, ratios, setting):
    steps = request["num_inference_steps"]
    pipe.transformer.enable_cache(MagCacheConfig(mag_ratios=ratios, num_inference_steps=steps, **setting))
    counter = {"step": 0}

    def on_step(_pipe, step, _t, kwargs):
        counter["step"] += 1
        return kwargs

    computed = []

    def mark(*_):
        computed.append(counter["step"])

    hook = pipe.transformer.transformer_blocks[0].norm1.register_forward_hook(mark)
    images = pipe(prompt_embeds=tensors["prompt_embeds"], pooled_prompt_embeds=tensors["pooled_prompt_embeds"],
                  latents=tensors["latents"].clone(), output_type="np", callback_on_step_end=on_step,
                  **request).images
    hook.remove()
    pipe.transformer.disable_cache()
    skipped = [s for s in range(steps) if s not in computed]
    retention = int(setting["retention_ratio"] * steps + 0.5)
    if not skipped or len(skipped) == steps - retention:
        raise SystemExit(f"{setting}: skips {skipped}; both paths must run after the retention steps")
    return torch.from_numpy(images), skipped


def main():
    versions = {"script": "tools/magcache_fixtures.py", "torch": torch.__version__,
                "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})"}
    print(json.dumps(versions))
    pipe = FluxPipeline.from_pretrained(f"{DIR}/pipeline", torch_dtype=torch.float32, text_encoder=None,
                                        tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    tensors, request = load_inputs()
    ratios = calibrate(pipe, tensors, request)
    print("ratios", ratios)
    out, skipped = {}, {}
    for name, setting in SETTINGS.items():
        out[f"{name}.images"], skipped[name] = skipping_run(pipe, tensors, request, ratios, setting)
        print(name, skipped[name])
    metadata = {**versions, "ratios": json.dumps(ratios), "settings": json.dumps(SETTINGS),
                "skipped": json.dumps(skipped)}
    save_file(contiguous(out), f"{DIR}/magcache.safetensors", metadata=metadata)


if __name__ == "__main__":
    main()
