"""AP-BWE super-resolution speed (x real time), CUDA graphs against eager, and seam error.

    python3 tests/performance/bench_apbwe.py                          # CPU, 1 stream, eager
    python3 tests/performance/bench_apbwe.py --threads 1 --block-ms 200
    python3 tests/performance/bench_apbwe.py --device cuda --out "$OUT/apbwe.json"

Needs only torch and numpy: the plugin's modules are imported from this checkout by file path
(the project need not be installed). A full-size random-weight checkpoint (512 channels, 1536
hidden, 8 layers) is written in the released format and loaded like a real one. Input: a
speech-like 16 kHz signal, ``--seconds`` per stream, rolled differently for every stream.

For each precision, mode and stream count N (modes: ``eager``, exact shapes without graphs;
``graphs``, bucketed shapes replayed as CUDA graphs; ``graphs-conv``, the same with the depthwise
convolutions as grouped channels-last convolutions, cuDNN, instead of seven multiply-adds), N streams are fed in blocks of ``--block-ms`` to the batched
step, all N sharing every step as in the engine's worker under load. One untimed pass first
(graph capture happens there), then the best of ``--repeats`` timed passes. Before timing, each
graph mode is checked against eager on short blocks and tiny streams (as the CUDA-only unit test). x real time total =
N x seconds / wall seconds; per stream = seconds / wall seconds. max |graphs - eager| compares
a graph mode's output with eager's for the same input. Seam error: one stream in blocks against the same
signal as one whole-utterance step (eager).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch


def _bootstrap() -> None:
    """Registers ``veena``, ``veena.plugins`` and ``veena.plugins.apbwe`` as bare packages over
    this checkout's folders, so ``veena.plugins.apbwe.*`` import without installing the project
    and without running the plugin's ``__init__`` (which needs the platform's dependencies)."""
    root = Path(__file__).resolve().parents[2]
    for name, folder in (("veena", root), ("veena.plugins", root / "plugins"),
                         ("veena.plugins.apbwe", root / "plugins" / "apbwe")):
        module = types.ModuleType(name)
        module.__path__ = [str(folder)]
        sys.modules[name] = module


_bootstrap()
from veena.plugins.apbwe.checkpoint import load_generator, write_random_checkpoint  # noqa: E402
from veena.plugins.apbwe.engine import DTYPES, resolve_device, resolve_precision  # noqa: E402
from veena.plugins.apbwe.graphs import BucketRunner  # noqa: E402
from veena.plugins.apbwe.packed import PackedWeights  # noqa: E402
from veena.plugins.apbwe.streaming import StreamState, Work, run_step  # noqa: E402

SEAM_TOLERANCE = 1e-4
"""The unit tests' bound on |streamed - whole| (full scale 1.0)."""
MODES = {"eager": (False, "taps"), "graphs": (True, "taps"), "graphs-conv": (True, "conv")}
"""Mode: (CUDA graphs, ``PackedWeights.depthwise``)."""


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


def run_streams(packed: PackedWeights, signals: list[np.ndarray], block: int,
                runner: BucketRunner | None) -> list[np.ndarray]:
    """Every signal as one stream in blocks of ``block`` samples, all streams in every step."""
    states = [StreamState(packed.config) for _ in signals]
    outs: list[list[np.ndarray]] = [[] for _ in signals]
    longest = max(len(x) for x in signals)
    for pos in range(0, longest, block):
        live = [i for i, x in enumerate(signals) if pos < len(x)]
        works = [Work(states[i], signals[i][pos:pos + block], pos + block >= len(signals[i]))
                 for i in live]
        run_step(packed, works, runner)
        for i, w in zip(live, works):
            outs[i].append(w.out)
    return [np.concatenate(o) for o in outs]


def timed(packed: PackedWeights, signals: list[np.ndarray], block: int,
          runner: BucketRunner | None, repeats: int) -> tuple[float, float, float, list[np.ndarray]]:
    """(first pass s, best wall s, its process CPU s, outputs) over ``repeats`` timed passes."""
    sync = torch.cuda.synchronize if packed.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    outs = run_streams(packed, signals, block, runner)
    first = time.perf_counter() - t0
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        outs = run_streams(packed, signals, block, runner)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        best = min(best, (wall, cpu))
    return first, best[0], best[1], outs


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def seam(packed: PackedWeights, x: np.ndarray, block: int, runner: BucketRunner | None) -> dict:
    whole = run_streams(packed, [x], len(x), None)[0]
    streamed = run_streams(packed, [x], block, runner)[0]
    err = streamed - whole
    snr = 10 * np.log10(np.sum(whole ** 2) / max(float(np.sum(err ** 2)), 1e-30))
    return {"max_abs": float(np.abs(err).max()), "snr_db": float(snr)}


def check_graphs(setups: dict[str, tuple[PackedWeights, BucketRunner | None]]) -> dict[str, float]:
    """max |graph mode - eager| per graph mode for the unit test's mix (three 1.3 s streams
    and a 20 ms one) in 20 ms and 1 s blocks: short blocks, tiny streams, padding rows."""
    signals = [speechlike(1.3, seed=i) for i in range(3)] + [speechlike(0.02, seed=9)]
    eager = setups["eager"][0]
    worst: dict[str, float] = {}
    for block in (320, 16000):
        ref = run_streams(eager, signals, block, None)
        for mode, (packed, runner) in setups.items():
            if runner is not None:
                diff = max_diff(run_streams(packed, signals, block, runner), ref)
                worst[mode] = max(worst.get(mode, 0.0), diff)
    return worst


def set_precision(precision: str) -> None:
    """TF32 matrix products for ``tf32`` only (process-wide switch)."""
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=None,
                    help="default: tf32 and bfloat16 on a GPU, float32 on CPU")
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=None,
                    help="default: all on a GPU, eager on CPU (graphs need CUDA)")
    ap.add_argument("--streams", type=int, nargs="+", default=None,
                    help="default: 1 8 32 64 on a GPU, 1 on CPU")
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per stream")
    ap.add_argument("--block-ms", type=int, default=1000, help="new audio per stream per step")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes; the best is kept")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="torch.backends.cudnn.benchmark = True (only graphs-conv uses cuDNN)")
    ap.add_argument("--out", help="also write every result to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    precisions = args.precisions or (["tf32", "bfloat16"] if cuda else ["float32"])
    modes = args.modes or (list(MODES) if cuda else ["eager"])
    if any(MODES[m][0] for m in modes) and not cuda:
        ap.error("graph modes need --device cuda")
    counts = args.streams or ([1, 8, 32, 64] if cuda else [1])
    block = args.block_ms * 16

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_random_checkpoint(tmp, channels=512, layers=8, seed=1)
        model = load_generator(tmp, device)
        load_s = time.perf_counter() - t0
    cfg = model.config
    card = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    info = {"device": device, "card": card, "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "block_ms": args.block_ms,
            "seconds": args.seconds, "repeats": args.repeats,
            "cudnn_benchmark": args.cudnn_benchmark,
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "gflop_per_audio_second": round(cfg.flops_per_frame() * 600 / 1e9, 1)}
    print(" ".join(f"{k} {v}" for k, v in info.items()) + f" (checkpoint written and loaded in "
          f"{load_s:.1f} s)", flush=True)

    base = speechlike(args.seconds)
    results: list[dict] = []
    seams: list[dict] = []
    checks: list[dict] = []
    for precision in precisions:
        set_precision(resolve_precision(precision, device))
        setups: dict[str, tuple[PackedWeights, BucketRunner | None]] = {}
        for mode in modes:
            graphs, depthwise = MODES[mode]
            packed = PackedWeights(model, device, DTYPES[precision], depthwise)
            setups[mode] = (packed, BucketRunner(packed) if graphs else None)
        if "eager" in setups:
            for mode, diff in check_graphs(setups).items():
                checks.append({"precision": precision, "mode": mode, "max_abs": diff})
                print(f"check {precision} {mode} vs eager, 20 ms and 1 s blocks, 4 streams: "
                      f"max |diff| {diff:.2e}", flush=True)
        for mode, (packed, runner) in setups.items():
            s = seam(packed, base, block, runner)
            seams.append({"precision": precision, "mode": mode, **s})
            print(f"seam error {precision} {mode}, {args.block_ms} ms blocks vs whole utterance: "
                  f"max |diff| {s['max_abs']:.2e}, signal/difference {s['snr_db']:.1f} dB",
                  flush=True)
        for n in counts:
            signals = [np.roll(base, 4801 * i) for i in range(n)]
            outs: dict[str, list[np.ndarray]] = {}
            for mode, (packed, runner) in setups.items():
                first, wall, cpu, outs[mode] = timed(packed, signals, block, runner, args.repeats)
                row = {"precision": precision, "mode": mode, "streams": n, "first_pass_s": first,
                       "wall_s": wall, "cpu_s": cpu, "x_rt_total": n * args.seconds / wall,
                       "x_rt_per_stream": args.seconds / wall}
                if runner is not None and "eager" in outs:
                    row["max_abs_graphs_vs_eager"] = max_diff(outs[mode], outs["eager"])
                results.append(row)
                print(json.dumps(row), flush=True)
        for mode, (packed, runner) in setups.items():
            if runner is not None:
                stats = {"precision": precision, "mode": mode, "captures": runner.captures,
                         "replays": runner.replays, "padded_eager": runner.padded_eager,
                         "unbucketed": runner.unbucketed, "shapes": runner.shapes}
                info.setdefault("graph_stats", []).append(stats)
                print(json.dumps(stats), flush=True)
        del setups, packed, runner
        if cuda:
            torch.cuda.empty_cache()

    print(f"\n{args.block_ms} ms blocks, {args.seconds:g} s per stream, {card}")
    print("| precision | mode | streams | x real time total | x real time per stream | wall s "
          "| CPU s | first pass s | max \\|graphs - eager\\| |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        diff = r.get("max_abs_graphs_vs_eager")
        print(f"| {r['precision']} | {r['mode']} | {r['streams']} | {r['x_rt_total']:.1f} | "
              f"{r['x_rt_per_stream']:.1f} | {r['wall_s']:.3f} | {r['cpu_s']:.2f} | "
              f"{r['first_pass_s']:.2f} | {'' if diff is None else f'{diff:.1e}'} |")
    worst = [f"{r['precision']} {r['mode']} x{r['streams']}" for r in results
             if r.get("max_abs_graphs_vs_eager", 0.0) > SEAM_TOLERANCE]
    worst += [f"{c['precision']} {c['mode']} check" for c in checks if c["max_abs"] > SEAM_TOLERANCE]
    if checks:
        print(f"graph modes vs eager: {'all' if not worst else 'NOT all'} within {SEAM_TOLERANCE}"
              + (f" (over: {', '.join(worst)}; bfloat16 rounds differently per batch shape)"
                 if worst else ""))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"info": info, "seam": seams, "checks": checks,
                                              "results": results}, indent=1))
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
