"""What the resumable training scripts share (train_mnist_flux_vae.py, train_mnist_flux.py; the command line
and the atomic save also train_mnist_dit.py): their common flags, seeding, the recorded command, the atomic
checkpoint write, the data cursor and RNG states a resume restores, linear learning-rate warmup, the EMA
decay schedule, and SIGTERM as a stop request.

Only the standard library, numpy and torch are imported, so Debian's torch 1.13 runs it as well as torch 2.x.
"""

import os
import shlex
import signal
import sys

import numpy as np
import torch

import mnist_data


def command_line():
    return shlex.join([sys.executable] + sys.argv)


def save_checkpoint(path, state):
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # atomic: a kill mid-save leaves the previous checkpoint intact


def add_run_arguments(p, *, iterations, warmup, ema, log_every, eval_every, export_help):
    """The flags every resumable run takes; each script adds its model's own."""
    p.add_argument("--digits", default=mnist_data.DEFAULT_DIGITS_DIR)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --work if there is one")
    p.add_argument("--export", metavar="OUT_DIR", help=export_help)
    p.add_argument("--iterations", type=int, default=iterations, help="total target (a resume continues to it)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--ema", type=float, default=ema)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=log_every)
    p.add_argument("--eval-every", type=int, default=eval_every)
    p.add_argument("--save-minutes", type=float, default=5.0)


def seed_run(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)


def loop_state(iteration, cursor, perm, seconds):
    """The checkpoint entries a resume continues the same data order and random draws from."""
    return {"iteration": iteration, "cursor": cursor, "perm": perm, "seconds": seconds,
            "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()}


def restore_loop(ck):
    """(iteration, cursor, perm, seconds) of a checkpoint, its RNG states restored."""
    torch.set_rng_state(ck["torch_rng"])
    np.random.set_state(ck["numpy_rng"])
    return ck["iteration"], ck["cursor"], ck["perm"], ck["seconds"]


def set_warmup_lr(optimizers, lr, warmup, iteration):
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (iteration + 1) / warmup)


def ema_decay(target, iteration):
    """The EMA's decay at `iteration`: a short memory while the run is young, `target` after."""
    return min(target, (1 + iteration) / (10 + iteration))


def stop_on_sigterm():
    """A list that SIGTERM appends to: the loop stops, saves and exits at the next iteration."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    return stop
