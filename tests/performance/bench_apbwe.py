"""AP-BWE super-resolution speed (x real time) and seam error, on CPU or a GPU.

    python tests/performance/bench_apbwe.py                        # CPU, 1 stream
    python tests/performance/bench_apbwe.py --threads 1            # one core
    python tests/performance/bench_apbwe.py --device cuda --streams 1 64 256
    python tests/performance/bench_apbwe.py --device cuda --precision bfloat16 --streams 64

A full-size random-weight checkpoint (512 channels, 8 layers) is written in the released
format and loaded like a real one. Input: a speech-like 16 kHz signal.

For each stream count N: N streams of ``--seconds`` audio each are fed in blocks of
``--block-ms`` to the batched streaming step (all N streams share each step, as the engine's
worker does under load), after one untimed warm-up pass. x real time (total) = N x seconds /
wall seconds; per stream = seconds / wall seconds. On CPU the process's CPU time is reported
too (other load on a shared VM inflates wall time but not CPU time).

Seam error: one stream fed in blocks of ``--block-ms`` against the same signal processed as a
whole utterance (max |difference| and the signal-to-difference ratio in dB).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from veena.plugins.apbwe.checkpoint import load_generator, write_random_checkpoint
from veena.plugins.apbwe.engine import DTYPES, resolve_device, resolve_precision
from veena.plugins.apbwe.streaming import PackedWeights, StreamState, Work, run_step


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(0.25 / k * np.sin(k * phase) for k in range(1, 12))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2
    x += 0.02 * rng.standard_normal(n) * (np.sin(2 * np.pi * 1.1 * t) > 0.6)
    return x.astype(np.float32)


def run_streams(packed: PackedWeights, signals: list[np.ndarray], block: int) -> list[np.ndarray]:
    states = [StreamState(packed.config, packed.device) for _ in signals]
    outs: list[list[np.ndarray]] = [[] for _ in signals]
    longest = max(len(x) for x in signals)
    for pos in range(0, longest, block):
        works = [Work(s, x[pos:pos + block], pos + block >= len(x))
                 for s, x in zip(states, signals) if pos < len(x)]
        run_step(packed, works)
        for i, w in enumerate(works):
            outs[i].append(w.out)
    return [np.concatenate(o) for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--precision", default="auto", choices=["auto", *DTYPES])
    ap.add_argument("--streams", type=int, nargs="+", default=[1])
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per stream")
    ap.add_argument("--block-ms", type=int, default=1000, help="new audio per stream per step")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes; the best is kept")
    ap.add_argument("--json", action="store_true", help="also print one JSON line per result")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        write_random_checkpoint(tmp, seed=1)
        model = load_generator(tmp, device)
    packed = PackedWeights(model, device, DTYPES[precision])
    block = args.block_ms * 16
    card = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(f"device {device} ({card}), precision {precision}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, block {args.block_ms} ms, "
          f"{args.seconds:g} s per stream, {model.config.flops_per_frame() * 600 / 1e9:.1f} "
          f"GFLOP per audio second")

    x = speechlike(min(args.seconds, 10.0))
    whole = run_streams(packed, [x], len(x))[0]
    streamed = run_streams(packed, [x], block)[0]
    err = streamed - whole
    snr = 10 * np.log10(np.sum(whole ** 2) / max(np.sum(err ** 2), 1e-30))
    print(f"seam error, {args.block_ms} ms blocks vs whole utterance: max |diff| "
          f"{np.abs(err).max():.2e} (full scale 1.0), signal/difference {snr:.1f} dB")
    if device == "cpu" or precision != "float32":
        ref_packed = PackedWeights(model, device, torch.float32) if precision != "float32" else None
        if ref_packed is not None:
            torch.backends.cuda.matmul.allow_tf32 = False
            ref = run_streams(ref_packed, [x], len(x))[0]
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            d = whole - ref
            print(f"{precision} vs float32 (whole utterance): max |diff| {np.abs(d).max():.2e}, "
                  f"signal/difference {10 * np.log10(np.sum(ref ** 2) / np.sum(d ** 2)):.1f} dB")

    print("| streams | block ms | wall s | x real time total | x real time per stream | CPU s |")
    print("|---|---|---|---|---|---|")
    for n in args.streams:
        base = speechlike(args.seconds)
        signals = [np.roll(base, 4801 * i) for i in range(n)]
        run_streams(packed, signals[:max(1, min(n, 4))], block)  # warm-up (allocator, kernels)
        best = None
        for _ in range(args.repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            run_streams(packed, signals, block)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if best is None or wall < best[0]:
                best = (wall, cpu)
        wall, cpu = best
        audio = n * args.seconds
        print(f"| {n} | {args.block_ms} | {wall:.3f} | {audio / wall:.1f} | "
              f"{args.seconds / wall:.1f} | {cpu:.2f} |")
        if args.json:
            print(json.dumps({"device": card, "precision": precision, "streams": n,
                              "block_ms": args.block_ms, "seconds": args.seconds, "wall": wall,
                              "cpu": cpu, "x_rt_total": audio / wall,
                              "x_rt_per_stream": args.seconds / wall}))


if __name__ == "__main__":
    main()
