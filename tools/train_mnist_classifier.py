"""Train the small MNIST digit classifier the engine uses to score generated digits: accuracy of the
generated images against their requested class, and a Frechet distance on its penultimate features.
The TypeScript engine reimplements this forward pass (im2col + matmul, channels-last activations),
so the layer names, shapes and the channels-last flatten order here are the spec.

  x [B,1,28,28] in [-1,1] (same scaling as the DiT's data, so generated images feed straight in)
  conv1 Conv2d(1,32,3,s2,p1)+ReLU -> [B,32,14,14]; conv2 Conv2d(32,64,3,s2,p1)+ReLU -> [B,64,7,7]
  flatten channels-last (permute(0,2,3,1)) -> [B,3136]; fc1 Linear(3136,128)+ReLU = features; fc2 -> logits [B,10]

Command (repo root; torch lives only in /usr/bin/python3; trains on the training split of
tools/mnist_data.py, evaluates on its held-out split, writes weights, held-out feature statistics and the test fixture):
  nice -n 5 /usr/bin/python3 tools/train_mnist_classifier.py --digits /work/mnist/package/src/digits
Dry run without touching the repo:
  ... --out-dir /tmp/cls --fixtures-out /tmp/cls-fixtures
"""

import argparse, json, math, os, shlex, sys, time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # 2-core box: BLAS threads on top of torch's oversubscribe
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mnist_data
import safetensors_io

SCRIPT = "tools/train_mnist_classifier.py"
C1, C2, FEATURES, NUM_CLASSES = 32, 64, 128, mnist_data.NUM_CLASSES
FLAT = 7 * 7 * C2


class MnistClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, C1, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(C1, C2, 3, stride=2, padding=1)
        self.fc1, self.fc2 = nn.Linear(FLAT, FEATURES), nn.Linear(FEATURES, NUM_CLASSES)
        for layer in (self.conv1, self.conv2, self.fc1):  # He init: PyTorch's default is ~2.4x smaller for ReLU
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")  # nets, and more fc1 units start dead
            nn.init.zeros_(layer.bias)

    def forward(self, x, capture=None):
        """x [B,1,28,28] in [-1,1] -> (logits [B,10], features [B,128]); `capture` gets channels-last convs."""
        h1 = F.relu(self.conv1(x))  # [B,32,14,14]
        h2 = F.relu(self.conv2(h1))  # [B,64,7,7]
        feats = F.relu(self.fc1(h2.permute(0, 2, 3, 1).flatten(1)))  # channels-last: the engine's [B,49,64] order
        if capture is not None:
            capture["conv1"] = h1.permute(0, 2, 3, 1).reshape(len(x), -1, C1)
            capture["conv2"] = h2.permute(0, 2, 3, 1).reshape(len(x), -1, C2)
        return self.fc2(feats), feats


def augment(x01, max_shift, max_rot_deg, scale_range):
    """Random affine (shift up to max_shift px, small rotation and scale) on 0..1 images, so out-of-frame
    pixels fill with 0 (= background; in [-1,1] space zero padding would be grey). Generated digits are
    less centred and less regular than MNIST's, and this is what keeps the classifier honest on them."""
    b = len(x01)
    ang = (torch.rand(b) * 2 - 1) * math.radians(max_rot_deg)
    scale = 1 + (torch.rand(b) * 2 - 1) * scale_range
    shift = (torch.rand(b, 2) * 2 - 1) * max_shift * 2 / 28  # pixels -> normalised coords (align_corners=False)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def predict(model, x, batch=500):
    outs = [model(x[i:i + batch]) for i in range(0, len(x), batch)]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def command_line():
    return shlex.join([sys.executable] + sys.argv)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--digits", default=mnist_data.DEFAULT_DIGITS_DIR)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=70, help="linear lr warmup steps")
    p.add_argument("--fc1-lr-scale", type=float, default=0.1, help="fc1 lr = lr * this (see the optimizer comment)")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--max-shift", type=float, default=2.0, help="pixels")
    p.add_argument("--max-rot", type=float, default=10.0, help="degrees")
    p.add_argument("--scale", type=float, default=0.1, help="scale in [1-s, 1+s]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", default="weights/mnist-classifier")
    p.add_argument("--fixtures-out", default="tests/fixtures", help="folder for the engine test fixture")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    command = command_line()

    images, labels = mnist_data.load_digits(args.digits)
    train_idx, held_idx = mnist_data.heldout_split(labels)
    x01, y = torch.from_numpy(images)[:, None], torch.from_numpy(labels)
    x_train, y_train = x01[train_idx], y[train_idx]
    x_held, y_held = torch.from_numpy(mnist_data.to_model_range(images[held_idx]))[:, None], y[held_idx]

    model = MnistClassifier()
    # Adam moves every weight by ~lr per step regardless of gradient size, and fc1's 3136 inputs are all >= 0
    # (post-ReLU), so a full-lr step shifts a unit's pre-activation by ~lr * sum(inputs): at lr 1e-3 this
    # killed half the 128 features within a few steps (measured: 64 never active on the held-out digits).
    # Dead features waste the Frechet statistics, hence the smaller fc1 lr and the warmup.
    fc1 = [q for n, q in model.named_parameters() if n.startswith("fc1.")]
    rest = [q for n, q in model.named_parameters() if not n.startswith("fc1.")]
    opt = torch.optim.AdamW([{"params": rest, "lr": args.lr}, {"params": fc1, "lr": args.lr * args.fc1_lr_scale}],
                            lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(x_train) // args.batch  # drop the ragged last batch; the permutation changes each epoch
    total = args.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, args.warmup))
                                             * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    print(f"training {sum(q.numel() for q in model.parameters())} params on {len(x_train)} digits, "
          f"{args.epochs} epochs x {steps_per_epoch} steps, held out {len(x_held)}", flush=True)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm, loss_sum = torch.randperm(len(x_train)), 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            xb = mnist_data.to_model_range(augment(x_train[idx], args.max_shift, args.max_rot, args.scale))
            loss = F.cross_entropy(model(xb)[0], y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item()
        model.eval()
        logits, feats = predict(model, x_held)
        acc, dead = (logits.argmax(1) == y_held).float().mean().item(), int((feats.max(0).values == 0).sum())
        print(f"epoch {epoch + 1} loss {loss_sum / steps_per_epoch:.4f} held-out acc {acc:.4f} dead features {dead} "
              f"elapsed {time.time() - start:.0f}s", flush=True)
    train_seconds = time.time() - start

    model.eval()
    logits, feats = predict(model, x_held)
    pred = logits.argmax(1)
    acc = (pred == y_held).float().mean().item()
    per_class = {str(d): round((pred[y_held == d] == d).float().mean().item(), 4) for d in range(NUM_CLASSES)}
    print(f"held-out accuracy {acc:.4f} ({int((pred == y_held).sum())}/{len(y_held)})")
    print("per class: " + " ".join(f"{d}:{a:.3f}" for d, a in per_class.items()))

    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.fixtures_out, exist_ok=True)
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    safetensors_io.write(os.path.join(args.out_dir, "model.safetensors"), weights,
                         {"script": SCRIPT, "format": "pt", "command": command})
    config = {"_class_name": "MnistClassifier", "image_size": 28, "in_channels": 1,
              "conv1": {"out_channels": C1, "kernel_size": 3, "stride": 2, "padding": 1},
              "conv2": {"out_channels": C2, "kernel_size": 3, "stride": 2, "padding": 1},
              "flatten": "channels_last", "fc1_in": FLAT, "features": FEATURES, "num_classes": NUM_CLASSES,
              "activation": "relu", "input_range": [-1, 1], "held_out_accuracy": round(acc, 4),
              "held_out_accuracy_per_class": per_class, "train_digits": len(x_train), "held_out_digits": len(x_held),
              "epochs": args.epochs, "batch_size": args.batch, "lr": args.lr, "fc1_lr_scale": args.fc1_lr_scale,
              "warmup_steps": args.warmup, "schedule": "cosine", "weight_decay": args.weight_decay, "init": "he_normal",
              "augmentation": {"max_shift_px": args.max_shift, "max_rotation_deg": args.max_rot,
                               "scale": [1 - args.scale, 1 + args.scale]},
              "seed": args.seed, "command": command, "training_seconds": round(train_seconds, 1),
              "torch_dtype": "float32"}
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    # Engine reference: first 4 held-out digits + 2 seeded N(0,1) noise images (clamped to the input range).
    noise = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1234)).clamp(-1, 1)
    x_fix, cap = torch.cat([x_held[:4], noise]), {}
    with torch.no_grad():
        fix_logits, fix_feats = model(x_fix, capture=cap)
    f32 = lambda a: a.detach().numpy().astype(np.float32)  # the engine's reader takes F32/F16/BF16 only
    fix = {"x": f32(x_fix), "labels": np.array(y_held[:4].tolist() + [-1, -1], np.float32),
           "conv1": f32(cap["conv1"]), "conv2": f32(cap["conv2"]), "features": f32(fix_feats), "logits": f32(fix_logits)}
    fix_path = os.path.join(args.fixtures_out, "mnist-classifier.safetensors")
    safetensors_io.write(fix_path, fix, {"script": SCRIPT, "command": command, "weights": "weights/mnist-classifier",
                                         "note": "x[0:4] first held-out digits, x[4:6] seeded noise (labels -1); "
                                                 "conv1/conv2 channels-last [B,H*W,C] after ReLU"})
    # Frechet reference statistics on the held-out digits (float64 like pytorch-fid, ddof=1, stored as F32).
    f64 = feats.numpy().astype(np.float64)
    stats = {"mean": f64.mean(0).astype(np.float32), "cov": np.cov(f64, rowvar=False).astype(np.float32),
             "count": np.array([len(f64)], np.float32),
             "class_counts": np.bincount(y_held.numpy(), minlength=NUM_CLASSES).astype(np.float32)}
    stats_path = os.path.join(args.out_dir, "heldout-features.safetensors")  # the Frechet reference, beside the model
    safetensors_io.write(stats_path, stats, {"script": SCRIPT, "command": command, "features": "fc1 after ReLU",
                                             "cov": "np.cov(rowvar=False), ddof=1, computed in float64"})
    for path in (os.path.join(args.out_dir, "model.safetensors"), os.path.join(args.out_dir, "config.json"),
                 fix_path, stats_path):
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
