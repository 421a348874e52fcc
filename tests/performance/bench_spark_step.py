"""One Veena3 LLM decode step on a GPU, A/B between implementations of the static-cache model:
kernels per step, step time replaying the CUDA graph (without sampling, with batched sampling run
after it as before, and with the sampling captured in the graph) and the largest logit difference
from the first implementation.

    python tests/performance/bench_spark_step.py [--ckpt DIR] [--batches 1,64,256]
        [--old path/to/static_model.py] [--compile]

Variants: ``new`` (the checkout's ``StaticQwen2``), ``old`` (a ``static_model.py`` loaded from
``--old``, e.g. ``git show REV:plugins/spark/engine/static_model.py``), and with ``--compile``
``new+compile`` (each layer's two halves under ``torch.compile``, inside the same CUDA graphs).
``--gil``: how much Python a second thread runs while this one replays steps back to back and
waits for each step's tokens with ``.tolist()`` or with an event (pinned copy, then
``Event.synchronize``), as a decoder thread runs beside the engine.
Each row of every batch has ``CONTEXT`` tokens in its cache; rows sample from 8,194 allowed ids
(the semantic phase's set), top-k 50. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CONTEXT = 300
LENGTH = 512
"""The cache-length bucket every step reads (CONTEXT + 1 rounds up to it)."""


def timed(fn: Callable[[], Any], repeat: int = 50) -> float:
    """Median milliseconds of ``fn`` after warm-up, GPU work included."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def kernels(fn: Callable[[], Any]) -> tuple[int, float]:
    """GPU kernels one eager call of ``fn`` launches, and their summed busy time (ms)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type.name == "CUDA"]
    return len(events), sum(e.time_range.elapsed_us() for e in events) / 1000


def load_class(path: Path) -> type:
    spec = importlib.util.spec_from_file_location("static_model_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StaticQwen2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--old", type=Path, default=None)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--gil", action="store_true")
    args = ap.parse_args()
    from veena.plugins.spark.checkpoint import write_random_checkpoint
    from veena.plugins.spark.engine.loading import load_causal_lm
    from veena.plugins.spark.engine.static_model import StaticQwen2

    ckpt = args.ckpt or Path(tempfile.mkdtemp(prefix="veena-step-")) / "full"
    if not (ckpt / "LLM").exists():
        write_random_checkpoint(ckpt, "full")
    batches = [int(b) for b in args.batches.split(",")]
    dev = torch.device("cuda")
    hf = load_causal_lm(ckpt / "LLM", dev, torch.bfloat16, None)
    variants: list[tuple[str, type, bool]] = []
    if args.old:
        variants.append(("old", load_class(args.old), False))
    variants.append(("new", StaticQwen2, False))
    if args.compile:
        variants.append(("new+compile", StaticQwen2, True))
    print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    if args.gil:
        gil_table(hf)
        return
    print(f"{'variant':<13}{'batch':>6}{'kernels':>9}{'busy ms':>9}{'eager ms':>10}"
          f"{'graph ms':>10}{'+sample ms':>11}{'in-graph ms':>12}{'same tokens':>12}"
          f"{'max |dlogit|':>13}", flush=True)
    reference: dict[int, torch.Tensor] = {}
    allowed = torch.zeros(hf.lm_head.weight.shape[0], dtype=torch.bool)
    allowed[:8194] = True
    for name, cls, compiled in variants:
        try:
            run_variant(name, cls, compiled, hf, batches, reference, allowed)
        except Exception as exc:  # a variant that fails (e.g. compile) is reported, not fatal
            print(f"{name}: failed: {type(exc).__name__}: {exc}"[:2000], flush=True)
        torch.cuda.empty_cache()


def gil_table(hf: Any) -> None:
    """Python loop iterations per second of a second thread while steps replay (batch 1)."""
    import threading

    from veena.plugins.spark.engine.cuda_graphs import DecodeGraphs
    from veena.plugins.spark.engine.static_model import StaticQwen2

    dev = torch.device("cuda")
    model = StaticQwen2(hf, slots=1, max_len=4096)
    graphs = DecodeGraphs(model, torch.cuda.graph_pool_handle())
    graphs.batches, graphs.lengths = [1], [LENGTH]
    host = torch.zeros(1, dtype=torch.long, pin_memory=True)
    event = torch.cuda.Event()
    inputs = torch.tensor([[5, CONTEXT]], device=dev)

    def by_tolist(logits: torch.Tensor) -> list[int]:
        return logits.argmax(-1).tolist()

    def by_event(logits: torch.Tensor) -> list[int]:
        host.copy_(logits.argmax(-1), non_blocking=True)
        event.record()
        event.synchronize()
        return host.tolist()

    print("| wait for tokens | steps/s | other thread's Python loops/s |\n|---|---|---|")
    with torch.inference_mode():
        graphs.capture()
        for name, fetch in (("idle (no steps)", None), (".tolist()", by_tolist),
                            ("pinned copy + Event.synchronize", by_event)):
            stop, count = threading.Event(), [0]

            def spin() -> None:
                while not stop.is_set():
                    count[0] += 1

            other = threading.Thread(target=spin)
            t = time.perf_counter()
            other.start()
            steps = 0
            while time.perf_counter() - t < 2.0:
                if fetch is None:
                    time.sleep(0.01)
                else:
                    fetch(graphs.step(inputs, CONTEXT + 1))
                    steps += 1
            stop.set()
            other.join()
            took = time.perf_counter() - t
            print(f"| {name} | {steps / took:.0f} | {count[0] / took:,.0f} |", flush=True)


def run_variant(name: str, cls: type, compiled: bool, hf: Any, batches: list[int],
                reference: dict[int, torch.Tensor], allowed: torch.Tensor) -> None:
    """Prints one row per batch for one implementation."""
    from veena.plugins.spark.engine.base import SamplingParams, TokenSet
    from veena.plugins.spark.engine.cuda_graphs import DecodeGraphs
    from veena.plugins.spark.engine.sampling import MaskTable, RowParams, sample

    dev = torch.device("cuda")
    model = cls(hf, slots=max(batches), max_len=4096)
    if compiled:
        t = time.perf_counter()
        model._qkv = torch.compile(model._qkv, dynamic=True)
        model._rest = torch.compile(model._rest, dynamic=True)
    masks = MaskTable(model.vocab, dev)
    semantic = TokenSet("semantic", tuple(torch.nonzero(allowed).flatten().tolist()))
    assert masks.index(semantic) == 1
    pool = torch.cuda.graph_pool_handle()
    graphs = DecodeGraphs(model, pool)
    sampling = DecodeGraphs(model, pool, masks)
    for g in (graphs, sampling):
        g.batches, g.lengths = batches, [LENGTH]
    with torch.inference_mode():
        graphs.capture()
        sampling.capture()
        if compiled:
            print(f"compile + capture: {time.perf_counter() - t:.1f} s", flush=True)
        for b in batches:
            ids = torch.randint(0, 8192, (b,), device=dev)
            pos = torch.full((b,), CONTEXT, device=dev)
            inputs = torch.stack([ids, pos], 1)
            count, busy = kernels(lambda: model.forward(0, ids[:, None], pos[:, None], LENGTH))
            eager = timed(lambda: model.forward(0, ids[:, None], pos[:, None], LENGTH), 10)
            graph = timed(lambda: graphs.step(inputs, CONTEXT + 1))
            params = [SamplingParams(temperature=0.8, top_k=50, top_p=0.95)] * b
            args = (params, list(range(b)), [0] * b, [1] * b, model.vocab)
            rows = RowParams.build(*args, dev)
            full = timed(lambda: sample(graphs.step(inputs, CONTEXT + 1), rows, masks.table,
                                        50).tolist())
            sampling.rows.load(*args)

            def in_graph() -> list[int]:
                sampling.step(inputs, CONTEXT + 1)
                return sampling.tokens(b).tolist()

            inside = timed(in_graph)
            sampling.rows.load(*args)  # same step counter for both
            same = (in_graph() == sample(graphs.step(inputs, CONTEXT + 1), rows, masks.table,
                                         50).tolist())
            torch.manual_seed(0)
            ids0 = torch.randint(0, 8192, (b,), device=dev)
            logits = graphs.step(torch.stack([ids0, pos], 1), CONTEXT + 1).clone()
            diff = (logits - reference[b]).abs().max().item() if b in reference else 0.0
            reference.setdefault(b, logits)
            print(f"{name:<13}{b:>6}{count:>9}{busy:>9.2f}{eager:>10.2f}{graph:>10.2f}"
                  f"{full:>11.2f}{inside:>12.2f}{str(same):>12}{diff:>13.4f}", flush=True)


if __name__ == "__main__":
    main()
