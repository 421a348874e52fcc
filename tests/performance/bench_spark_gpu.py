"""Veena3's GPU pieces in isolation: one LLM decode step and one BiCodec window per batch size.

    python tests/performance/bench_spark_gpu.py [--ckpt DIR] [--batches 1,8,32,64]

Builds (or reuses) a full-size random checkpoint (Qwen2.5-0.5B shape, 166000-token vocabulary,
the released BiCodec config) and prints, per batch size:
  - LLM decode step (ms): plain Hugging Face (DynamicCache, eager), the static-cache model
    eager, and the static-cache model replaying a CUDA graph (with sampling);
  - BiCodec decode of one 73-token window per row (ms), float32 and bfloat16.
Needs a CUDA GPU. Results and the card go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CONTEXT = 300
"""Tokens already in each row's cache when the step is timed (a prompt plus some speech)."""


def timed(fn, repeat: int = 30) -> float:
    """Median milliseconds of ``fn`` over ``repeat`` runs after warm-up, GPU work included."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def llm_rows(ckpt: Path, batches: list[int]) -> list[dict]:
    from transformers import DynamicCache

    from veena.plugins.spark.engine.base import SamplingParams
    from veena.plugins.spark.engine.cuda_graphs import DecodeGraphs, PrefillGraphs
    from veena.plugins.spark.engine.loading import load_causal_lm
    from veena.plugins.spark.engine.sampling import MaskTable, RowParams, sample
    from veena.plugins.spark.engine.static_model import StaticQwen2

    import inspect

    dev = torch.device("cuda")
    hf = load_causal_lm(ckpt / "LLM", dev, torch.bfloat16, None)
    cache_arg = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
    static = StaticQwen2(hf, slots=max(batches), max_len=4096)
    pool = torch.cuda.graph_pool_handle()
    graphs, prefill = DecodeGraphs(static, pool), PrefillGraphs(static, pool)
    t = time.perf_counter()
    graphs.capture()
    prefill.capture()
    capture_s = time.perf_counter() - t
    check_graphs(hf, static, graphs, prefill)
    masks = MaskTable(static.vocab, dev)
    allowed = masks.index(_semantic_set(static.vocab))
    rows_out = []
    for b in batches:
        ids = torch.randint(0, 1000, (b,), device=dev)
        pos = torch.full((b,), CONTEXT, device=dev)
        inputs = torch.stack([ids, pos], 1)
        rows = RowParams.build([SamplingParams()] * b, list(range(b)), [0] * b, [allowed] * b,
                               static.vocab, dev)
        with torch.inference_mode():
            prompt = torch.randint(0, 1000, (b, CONTEXT), device=dev)
            cache = DynamicCache()
            hf(input_ids=prompt, use_cache=True, **{cache_arg: cache})
            length = cache.get_seq_length()

            def hf_step():
                cache.crop(length)
                hf(input_ids=ids[:, None], use_cache=True, logits_to_keep=1, **{cache_arg: cache})

            def eager_step():
                static.forward(0, ids[:, None], pos[:, None], CONTEXT + 1)

            def graph_step():
                sample(graphs.step(inputs, CONTEXT + 1), rows, masks.table, 50).tolist()

            prompts = [tuple(range(100))] * b

            def prefill_eager():
                static.prefill(torch.arange(b, device=dev), prompt[:, :100], torch.full((b,), 99, device=dev))

            def prefill_graph():
                prefill.run(list(range(b)), prompts)

            rows_out.append({"batch": b, "hf eager ms": timed(hf_step, 10),
                             "static eager ms": timed(eager_step),
                             "static graph+sample ms": timed(graph_step),
                             "prefill 100 eager ms": timed(prefill_eager),
                             "prefill 100 graph ms": timed(prefill_graph) if b <= 32 else -1.0})
    print(f"captured {len(graphs.batches) * len(graphs.lengths)} graphs in {capture_s:.1f} s; "
          f"KV cache {static.cache_bytes / 2**30:.2f} GiB")
    return rows_out


def check_graphs(hf, static, graphs, prefill) -> None:
    """Prefills 4 prompts with a prefill graph, replays one decode graph step, and compares
    the logits with Hugging Face's forward (bf16: small differences)."""
    dev = static.device
    with torch.inference_mode():
        prompts = torch.randint(0, 1000, (4, 50), device=dev)
        first = prefill.run([0, 1, 2, 3], [tuple(p) for p in prompts.tolist()]).clone()
        want = hf(input_ids=prompts).logits[:, -1].float()
        print(f"prefill graph vs Hugging Face: max |logit diff| {(first - want).abs().max():.4f}")
        nxt = torch.randint(0, 1000, (4,), device=dev)
        got = graphs.step(torch.stack([nxt, torch.full((4,), 50, device=dev)], 1), 51).clone()
        want = hf(input_ids=torch.cat([prompts, nxt[:, None]], 1)).logits[:, -1].float()
    err = (got - want).abs().max().item()
    agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    print(f"graph step vs Hugging Face forward: max |logit diff| {err:.4f} "
          f"(logit scale {want.abs().max().item():.2f}), argmax agreement {agree:.2f}")


def _semantic_set(vocab: int):
    from veena.plugins.spark.engine.base import TokenSet

    return TokenSet("semantic", tuple(range(vocab - 8192, vocab)))


def decoder_rows(ckpt: Path, batches: list[int]) -> list[dict]:
    from veena.plugins.spark.bicodec import BiCodecDecoder

    out = []
    models = {name: BiCodecDecoder.from_pretrained(ckpt / "BiCodec", device="cuda", dtype=dtype)
              for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    for b in batches:
        row = {"batch": b}
        for name, model in models.items():
            tokens = torch.randint(0, 8192, (b, 73), device="cuda")
            with torch.inference_mode():
                d = model.speaker_embedding(torch.randint(0, 4096, (b, 32), device="cuda"))
                row[f"bicodec {name} ms"] = timed(lambda: model.decode_with_embedding(tokens, d))
        out.append(row)
    return out


def first_window_rows(ckpt: Path, lengths: list[int]) -> list[dict]:
    """One-row windows of ``lengths`` tokens: eager against ``FirstWindowGraph`` replays, and
    how far the replayed waveform is from the eager one (float32, TF32 convolutions both)."""
    from veena.plugins.spark.bicodec import BiCodecDecoder
    from veena.plugins.spark.decoder_graph import FirstWindowGraph

    model = BiCodecDecoder.from_pretrained(ckpt / "BiCodec", device="cuda")
    dev = torch.device("cuda")
    out = []
    with torch.inference_mode():
        d = model.speaker_embedding(torch.randint(0, 4096, (1, 32), device=dev))
        for n in lengths:
            graph = FirstWindowGraph(model, dev, n, d.shape[-1])
            tokens = tuple(torch.randint(0, 8192, (n,)).tolist())
            ids = torch.tensor([tokens], device=dev)
            eager = model.decode_with_embedding(ids, d).float().cpu()
            diff = (graph.decode(tokens, d) - eager).abs().max().item()
            out.append({"tokens": n,
                        "eager ms": timed(lambda: model.decode_with_embedding(ids, d).cpu()),
                        "graph ms": timed(lambda: graph.decode(tokens, d)),
                        "max diff LSB": diff * 32767})
    return out


def bf16_error(ckpt: Path) -> None:
    """How far a bfloat16 BiCodec decode is from the float32 one (same random window)."""
    from veena.plugins.spark.bicodec import BiCodecDecoder

    out = {}
    tokens = torch.randint(0, 8192, (1, 73), device="cuda", generator=None)
    glob = torch.randint(0, 4096, (1, 32), device="cuda")
    for name, dtype, tf32 in (("float32", torch.float32, False), ("bfloat16", torch.bfloat16, False),
                              ("tf32", torch.float32, True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        model = BiCodecDecoder.from_pretrained(ckpt / "BiCodec", device="cuda", dtype=dtype)
        with torch.inference_mode():
            out[name] = model(tokens, glob).float()
            if name != "bfloat16":
                t64, d64 = torch.randint(0, 8192, (64, 73), device="cuda"), model.speaker_embedding(
                    torch.randint(0, 4096, (64, 32), device="cuda"))
                print(f"BiCodec {name} (tf32 matmul+conv {tf32}): 64 windows "
                      f"{timed(lambda: model.decode_with_embedding(t64, d64)):.1f} ms")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    ref = out["float32"]
    for name in ("bfloat16", "tf32"):
        err = out[name] - ref
        snr = 10 * torch.log10(ref.pow(2).mean() / err.pow(2).mean()).item()
        print(f"BiCodec {name} vs strict float32: max |diff| {err.abs().max().item():.2e} "
              f"({err.abs().max().item() * 32768:.1f} int16 LSB), SNR {snr:.1f} dB")


def engine_rows(ckpt: Path, streams: list[int], tokens: int = 250) -> list[dict]:
    """The torch engine alone (no HTTP, no decoder): N requests of ``tokens`` tokens each."""
    import asyncio

    from veena.plugins.spark.engine import TokenRequest, SamplingParams, create_engine

    async def run() -> list[dict]:
        engine = create_engine("torch", ckpt / "LLM", device="cuda", dtype="bfloat16")
        await engine.start()
        rows = []
        try:
            for n in streams:
                firsts, ends = [], []

                async def one(i: int) -> None:
                    t0, first = time.perf_counter(), None
                    s = engine.submit(TokenRequest(f"b{n}-{i}", tuple(range(100, 200)), tokens,
                                                   SamplingParams(seed=i)))
                    async for _ in s:
                        first = first or time.perf_counter() - t0
                    firsts.append(first)
                    ends.append(time.perf_counter() - t0)

                t = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                wall = time.perf_counter() - t
                steps = engine.stats()["steps"]
                rows.append({"streams": n, "first token ms p50": statistics.median(firsts) * 1000, "ms per token (1 stream view)":
                    statistics.median(ends) * 1000 / tokens, "tokens/s total": n * tokens / wall,
                    "steps": steps})
        finally:
            await engine.close()
        return rows

    return asyncio.run(run())


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k])
                                       for k in keys) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--first-window", default=None, metavar="26,18",
                    help="only time one-row first windows of these lengths, eager and graph")
    args = ap.parse_args()
    from veena.plugins.spark.checkpoint import write_random_checkpoint

    ckpt = args.ckpt or Path(tempfile.mkdtemp(prefix="veena3-full-"))
    if not (ckpt / "LLM").exists():
        write_random_checkpoint(ckpt, "full")
    batches = [int(b) for b in args.batches.split(",")]
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    if args.first_window:
        print(table(first_window_rows(ckpt, [int(n) for n in args.first_window.split(",")])))
        return
    print(table(llm_rows(ckpt, batches)))
    print(table(decoder_rows(ckpt, batches)))
    bf16_error(ckpt)
    print(table(engine_rows(ckpt, batches)))


if __name__ == "__main__":
    main()
