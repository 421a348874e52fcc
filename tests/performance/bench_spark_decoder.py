"""Streaming BiCodec decode on CPU: seam error against a whole-utterance decode, and the cost of
one emitted block at 5 s and 60 s into an utterance (it must not grow with length).

    .venv/bin/python tests/performance/bench_spark_decoder.py                  # tiny: quick
    .venv/bin/python tests/performance/bench_spark_decoder.py --seam --size full  # minutes on CPU
    .venv/bin/python tests/performance/bench_spark_decoder.py --cost --size both
    .venv/bin/python tests/performance/bench_spark_decoder.py --first --size full  # first seam

Random weights in the released shapes (``--size full``) or the test checkpoint's (``tiny``).
Results and the machine go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from veena.plugins.spark.bicodec import BiCodecConfig, BiCodecDecoder
from veena.plugins.spark.checkpoint import bicodec_config, random_bicodec_state
from veena.plugins.spark.streaming import StreamingDecoder, WindowPlan

HOP = 320
TOKENS_PER_SECOND = 50


def build(size: str, seed: int = 0) -> BiCodecDecoder:
    cfg = bicodec_config(size)
    model = BiCodecDecoder(BiCodecConfig.from_dict(cfg))
    model.load_released_state(random_bicodec_state(cfg, seed))
    return model.eval().requires_grad_(False)


def stream_decode(model: BiCodecDecoder, tokens: np.ndarray, d_vector: torch.Tensor,
                  plan: WindowPlan, timed: set[int] | None = None) -> tuple[np.ndarray, list[float]]:
    """Runs the real StreamingDecoder over ``tokens`` pushed one at a time. Windows whose index is
    not in ``timed`` (when given) are not decoded (zeros stand in), to sample long utterances."""
    dec, out, costs, index = StreamingDecoder(plan), [], [], 0

    def drain() -> None:
        nonlocal index
        while (w := dec.next_window()) is not None:
            if timed is None or index in timed:
                t = time.perf_counter()
                with torch.inference_mode():
                    audio = model.decode_with_embedding(
                        torch.tensor([w.tokens]), d_vector)[0].numpy()
                costs.append(time.perf_counter() - t)
            else:
                audio = np.zeros((w.stop - w.start) * HOP, np.float32)
            out.append(dec.accept(w, audio))
            index += 1

    for tok in tokens.tolist():
        dec.push(tok)
        drain()
    dec.finish()
    drain()
    return np.concatenate(out), costs


def seam_table(size: str, seconds: float, grid: list[tuple[int, int]]) -> None:
    model = build(size)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 8192, int(seconds * TOKENS_PER_SECOND))
    d = model.speaker_embedding(torch.tensor(rng.integers(0, 4096, (1, 32))))
    t = time.perf_counter()
    with torch.inference_mode():
        full = model.decode_with_embedding(torch.tensor([tokens]), d)[0].numpy()
    full_s = time.perf_counter() - t
    print(f"\nseam error, {size} decoder, {seconds:g} s of random tokens "
          f"(whole decode {full_s:.2f} s; signal RMS {np.sqrt(np.mean(full ** 2)):.3f})")
    print("| left | lookahead | window tokens | max abs error | error (int16 LSB) | SNR dB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for left, ahead in grid:
        plan = WindowPlan(left=left, lookahead=ahead, crossfade=min(160, ahead * HOP))
        streamed, _ = stream_decode(model, tokens, d, plan)
        assert len(streamed) == len(full)
        err = np.abs(streamed - full)
        snr = 10 * np.log10(np.sum(full ** 2) / max(np.sum(err ** 2), 1e-30))
        print(f"| {left} | {ahead} | {plan.max_window} | {err.max():.2e} | "
              f"{err.max() * 32767:.2f} | {snr:.1f} |", flush=True)


def first_seam_table(size: str, seconds: float, policies: list[tuple[int, int]]) -> None:
    """Error of the first seam: the streamed waveform against a whole decode when only the
    first block's lookahead shrinks (left and later lookaheads stay at 24, blocks ramp to 80)."""
    model = build(size)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 8192, int(seconds * TOKENS_PER_SECOND))
    d = model.speaker_embedding(torch.tensor(rng.integers(0, 4096, (1, 32))))
    with torch.inference_mode():
        full = model.decode_with_embedding(torch.tensor([tokens]), d)[0].numpy()
    head = TOKENS_PER_SECOND * HOP  # the first second: where the first seam lies
    print(f"\nfirst-seam error, {size} decoder, {seconds:g} s of random tokens "
          f"(signal RMS {np.sqrt(np.mean(full ** 2)):.3f}); later windows 24 + block + 24")
    print("| first block | first lookahead | tokens before first audio | max error, int16 LSB | "
          "max error dB (re full scale) | SNR dB, first second | SNR dB, whole |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for first, ahead in policies:
        plan = WindowPlan(first_block=first, first_lookahead=ahead, block=80,
                          crossfade=min(160, ahead * HOP))
        streamed, _ = stream_decode(model, tokens, d, plan)
        assert len(streamed) == len(full)
        err = np.abs(streamed - full)

        def snr(a: np.ndarray, e: np.ndarray) -> float:
            return 10 * np.log10(np.sum(a ** 2) / max(np.sum(e ** 2), 1e-30))

        peak = max(err.max(), 1e-12)
        print(f"| {first} | {ahead} | {plan.first_audio_after()} | {peak * 32767:.2f} | "
              f"{20 * np.log10(peak):.1f} | {snr(full[:head], err[:head]):.1f} | "
              f"{snr(full, err):.1f} |", flush=True)


def cost_table(size: str, plan: WindowPlan, sample: int, repeats: int = 2) -> None:
    model = build(size)
    torch.set_grad_enabled(False)
    rng = np.random.default_rng(2)
    d = model.speaker_embedding(torch.tensor(rng.integers(0, 4096, (1, 32))))
    print(f"\nper-block decode cost, {size} decoder, window {plan.max_window} tokens "
          f"(left {plan.left}, block {plan.block}, lookahead {plan.lookahead}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"better of {repeats} runs")
    print("| utterance | blocks | blocks timed | median ms/block | p95 ms/block | "
          "ms per audio second | re-decoding all so far, last block |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    warm = rng.integers(0, 8192, 4 * plan.max_window)
    stream_decode(model, warm, d, plan)  # warm-up: allocator, kernels
    for seconds in (5, 60):
        tokens = rng.integers(0, 8192, seconds * TOKENS_PER_SECOND)
        n_blocks = 1 + -(-(len(tokens) - plan.first_block) // plan.block)
        timed = None if sample <= 0 else set(range(1, sample + 1)) | set(range(n_blocks - sample, n_blocks))
        runs = []
        for _ in range(repeats):
            _, costs = stream_decode(model, tokens, d, plan, timed)
            ms = sorted(c * 1000 for c in (costs[1:] if timed is None else costs))
            runs.append(ms)  # (the first block is shorter; it is not timed)
        ms = min(runs, key=statistics.median)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        naive = "-"
        if size == "tiny" or seconds == 5:  # one decode of the whole utterance so far
            t = time.perf_counter()
            with torch.inference_mode():
                model.decode_with_embedding(torch.tensor(tokens[None]), d)
            naive = f"{(time.perf_counter() - t) * 1000:.0f} ms"
        print(f"| {seconds} s | {n_blocks} | {len(ms)} | {statistics.median(ms):.1f} | "
              f"{p95:.1f} | {statistics.median(ms) / (plan.block / TOKENS_PER_SECOND):.0f} | "
              f"{naive} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "full", "both"], default="tiny")
    ap.add_argument("--seam", action="store_true", help="only the seam-error table")
    ap.add_argument("--cost", action="store_true", help="only the per-block cost table")
    ap.add_argument("--first", action="store_true", help="only the first-seam table")
    ap.add_argument("--seconds", type=float, default=4.0, help="utterance for the seam table")
    ap.add_argument("--sample", type=int, default=6,
                    help="full size: time the first and last N blocks of each utterance "
                         "(0 = all); the tiny decoder always times every block")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1, as the plugin uses on CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    both = not (args.seam or args.cost or args.first)
    sizes = ["tiny", "full"] if args.size == "both" else [args.size]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    grid = [(0, 0), (4, 4), (8, 8), (12, 12), (16, 16), (20, 20), (24, 24), (32, 32), (67, 67),
            (24, 12), (12, 24)]
    for size in sizes:
        if args.seam or both:
            seam_table(size, args.seconds, grid)
        if args.first:
            first_seam_table(size, args.seconds, [(6, 24), (2, 24), (2, 20), (2, 16), (4, 12),
                                                  (2, 12), (4, 8), (2, 8), (2, 4)])
        if args.cost or both:
            cost_table(size, WindowPlan(), 0 if size == "tiny" else args.sample)


if __name__ == "__main__":
    main()
