"""``veena checkpoint random DIR [--size tiny|full]``: a random Veena3 checkpoint in the real
on-disk layout (``LLM/`` + ``BiCodec/``), for tests and benchmarks. Needs the ``neural`` extra."""

from __future__ import annotations

import argparse
import sys
import time


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("random", help="write a checkpoint with random weights")
    r.add_argument("dir", help="folder to create (LLM/ and BiCodec/ go inside)")
    r.add_argument("--size", choices=["tiny", "full"], default="tiny",
                   help="tiny: a few-layer LLM and small decoder (tests); full: Qwen2.5-0.5B "
                        "shape, vocab 166000, the released BiCodec config (GPU benchmarks)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", help="build the weights here (e.g. cuda; default cpu)")


def checkpoint(args: argparse.Namespace) -> int:
    """Writes Veena3 checkpoints (random weights in the real format)."""
    try:
        from veena.plugins.spark.checkpoint import write_random_checkpoint
    except ImportError as exc:
        print(f"veena: the neural voice needs its extra: pip install 'veena[neural]' ({exc})",
              file=sys.stderr)
        return 2
    t = time.perf_counter()
    folder = write_random_checkpoint(args.dir, args.size, seed=args.seed, device=args.device)
    print(f"random {args.size} Veena3 checkpoint in {folder} ({time.perf_counter() - t:.1f} s)",
          file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``veena checkpoint``."""
    p = subparsers.add_parser("checkpoint",
                              help="Writes Veena3 checkpoints (random weights in the real format).")
    _args(p)
    p.set_defaults(func=checkpoint)
