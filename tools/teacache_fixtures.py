"""TeaCache (the authors' TeaCache4FLUX rule, https://github.com/ali-vilab/TeaCache) on the tiny FLUX
pipeline of tools/flux_cache_fixtures.py, for tests/model/flux_teacache_test.ts.

The authors' teacache_forward targets an older FluxTransformer2DModel (single blocks on the concatenated
streams); this script wraps the current diffusers forward instead and keeps their rule exactly: on each call
the first double block's norm1 modulates x_embedder(hidden_states) with temb; the first and last calls always
compute; otherwise the relative L1 change of that modulated input against the previous call's, through
np.poly1d(coefficients), accumulates until it reaches rel_l1_thresh (then compute and reset). A computed call
keeps the residual the blocks added to the image stream (the input of norm_out minus x_embedder's output); a
skipped call runs norm_out and proj_out on x_embedder's output plus that residual.

Writes tests/fixtures/flux-cache/teacache.safetensors: <name>.images per setting; header "settings" (JSON, the
engine's option names, which are the authors'), "skipped" (JSON per setting), "rel_l1" (JSON: per setting the
measured relative L1 per call, null on calls that did not measure), versions. Settings that skip nothing, or
whose accumulated figure lands within MARGIN of the threshold, are refused.

  PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/teacache_fixtures.py
"""

import json

import diffusers
import numpy as np
import torch
from diffusers import FluxPipeline
from safetensors.torch import save_file

from flux_fixtures import DIFFUSERS_COMMIT, contiguous
from magcache_fixtures import DIR, load_inputs

# TeaCache4FLUX's coefficients for FLUX.1-dev (highest power first); on this random model they only need to
# map its changes to a positive scale.
COEFFICIENTS = [4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01]
SETTINGS = {
    "thresh0.3": dict(rel_l1_thresh=0.3, coefficients=COEFFICIENTS, ret_steps=1),
    "thresh0.6": dict(rel_l1_thresh=0.6, coefficients=COEFFICIENTS, ret_steps=1),
}
MARGIN = 0.01


class TeaCacheWrapper:
    def __init__(self, transformer, steps, setting):
        self.t, self.steps, self.o = transformer, steps, setting
        self.original = transformer.forward
        self.cnt, self.accumulated, self.previous_modulated, self.residual = 0, 0.0, None, None
        self.skipped, self.rel_l1, self.accumulations = [], [], []

    def __call__(self, hidden_states, *args, timestep=None, guidance=None, pooled_projections=None, **kwargs):
        t = self.t
        x = t.x_embedder(hidden_states)
        ts = timestep.to(x.dtype) * 1000
        temb = t.time_text_embed(ts, guidance.to(x.dtype) * 1000, pooled_projections)
        modulated = t.transformer_blocks[0].norm1(x, emb=temb)[0]
        if self.cnt == 0 or self.cnt == self.steps - 1:
            should_calc, measured = True, None
            self.accumulated = 0.0
        else:
            measured = ((modulated - self.previous_modulated).abs().mean()
                        / self.previous_modulated.abs().mean()).item()
            self.accumulated += np.poly1d(self.o["coefficients"])(measured)
            self.accumulations.append(self.accumulated)
            should_calc = self.accumulated >= self.o["rel_l1_thresh"]
            if should_calc:
                self.accumulated = 0.0
        self.previous_modulated = modulated
        self.rel_l1.append(measured)
        step = self.cnt
        self.cnt += 1
        if not should_calc:
            self.skipped.append(step)
            out = t.proj_out(t.norm_out(x + self.residual, temb))
            return (out,)
        seen = {}

        def keep_input(_module, inputs, _output):
            seen["h"] = inputs[0]  # returning None leaves norm_out's output as it is

        hook = t.norm_out.register_forward_hook(keep_input)
        result = self.original(hidden_states, *args, timestep=timestep, guidance=guidance,
                               pooled_projections=pooled_projections, **kwargs)
        hook.remove()
        self.residual = seen["h"] - x
        return result


def main():
    versions = {"script": "tools/teacache_fixtures.py", "torch": torch.__version__,
                "diffusers": f"{diffusers.__version__} ({DIFFUSERS_COMMIT})", "teacache": "TeaCache4FLUX rule"}
    print(json.dumps(versions))
    pipe = FluxPipeline.from_pretrained(f"{DIR}/pipeline", torch_dtype=torch.float32, text_encoder=None,
                                        tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    tensors, request = load_inputs()
    out, skipped, rel_l1 = {}, {}, {}
    for name, setting in SETTINGS.items():
        wrapper = TeaCacheWrapper(pipe.transformer, request["num_inference_steps"], setting)
        pipe.transformer.forward = wrapper
        images = pipe(prompt_embeds=tensors["prompt_embeds"], pooled_prompt_embeds=tensors["pooled_prompt_embeds"],
                      latents=tensors["latents"].clone(), output_type="np", **request).images
        pipe.transformer.forward = wrapper.original
        near = [a for a in wrapper.accumulations if abs(a - setting["rel_l1_thresh"]) < MARGIN]
        if not wrapper.skipped or near:
            raise SystemExit(f"{name}: skipped {wrapper.skipped}, accumulations near the threshold {near}")
        out[f"{name}.images"] = torch.from_numpy(images)
        skipped[name], rel_l1[name] = wrapper.skipped, wrapper.rel_l1
        print(name, wrapper.skipped, [round(a, 3) for a in wrapper.accumulations])
    metadata = {**versions, "settings": json.dumps(SETTINGS), "skipped": json.dumps(skipped),
                "rel_l1": json.dumps(rel_l1)}
    save_file(contiguous(out), f"{DIR}/teacache.safetensors", metadata=metadata)


if __name__ == "__main__":
    main()
