"""``veena apbwe``: write a random AP-BWE checkpoint in the released format, or check one."""

from __future__ import annotations

import argparse
import sys


def _setup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    rnd = sub.add_parser("random", help="write a random-weight checkpoint (tests, benchmarks)")
    rnd.add_argument("folder", help="folder to write g_16kto48k and config.json into")
    rnd.add_argument("--channels", type=int, default=512)
    rnd.add_argument("--layers", type=int, default=8)
    rnd.add_argument("--seed", type=int, default=0)
    check = sub.add_parser("check", help="load a checkpoint and enhance one second of noise")
    check.add_argument("path", help="checkpoint file or its folder")
    check.add_argument("--device", default="cpu")


def apbwe(args: argparse.Namespace) -> int:
    """AP-BWE super-resolution checkpoints: random (write one), check (load one)."""
    try:
        import numpy as np

        from veena.plugins.apbwe.checkpoint import (CheckpointError, load_generator,
                                                    write_random_checkpoint)
    except ImportError as exc:
        print(f"veena apbwe needs torch (pip install 'veena[neural]'): {exc}", file=sys.stderr)
        return 2
    if args.action == "random":
        path = write_random_checkpoint(args.folder, channels=args.channels, layers=args.layers,
                                       seed=args.seed)
        print(path)
        return 0
    from veena.plugins.apbwe.engine import Engine

    try:
        model = load_generator(args.path, args.device)
    except CheckpointError as exc:
        print(f"veena apbwe: {exc}", file=sys.stderr)
        return 1
    engine = Engine(model, args.device)
    try:
        rate = model.config.lr_sampling_rate
        out = engine.enhance(np.random.default_rng(0).standard_normal(rate).astype("float32") * 0.1)
    finally:
        engine.close()
    cfg = model.config
    print(f"ok: {cfg.channels} channels x {cfg.layers} layers, {cfg.lr_sampling_rate} -> "
          f"{cfg.hr_sampling_rate} Hz, 1 s in -> {len(out)} samples out")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``veena apbwe``."""
    p = subparsers.add_parser("apbwe", help="AP-BWE super-resolution checkpoints: random (write "
                                             "one), check (load one).")
    _setup(p)
    p.set_defaults(func=apbwe)
