"""Pipeline overhead per request, excluding synthesis and encoding.

    python tests/performance/bench_pipeline.py [--requests 3000]

Runs admit -> prepare (normalize, chunk) -> synthesize -> process -> encode -> record in-process
with a voice that yields one precomputed block and the raw ``pcm`` codec at the voice's rate, so
what is timed is the platform's own work: hook dispatch, validation, job bookkeeping, telemetry
and the request record. ``pcm`` encodes inline (on the event loop), as every cheap codec does;
the second row sends the same codec through the worker-thread hand-off that CPU-bound codecs
(opus, mp3, aac, flac) take, to show what that costs. Both run interleaved, in rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from veena.codecs.catalog import CODECS  # noqa: E402
from veena.platform.audio import PCM  # noqa: E402
from veena.platform.config import parse_config  # noqa: E402
from veena.platform.hookspecs import hookimpl  # noqa: E402
from veena.platform.pipeline import Pipeline  # noqa: E402
from veena.platform.plugins import build_runtime  # noqa: E402
from veena.platform.runtime import RequestInfo  # noqa: E402
from veena.platform.schemas import GenerateRequest  # noqa: E402

BLOCK = PCM(np.zeros(320, dtype=np.int16), 16000)


class Silent:
    name = "silent"
    sample_rate = 16000

    async def stream(self, job):
        job.mark_chunk_started(0)
        yield BLOCK


class Plugin:
    @hookimpl
    def veena_register_synthesizers(self, runtime):
        return [Silent()]

    @hookimpl
    def veena_register_codecs(self, runtime):
        pcm = next(c for c in CODECS if c.name == "pcm")
        return [dataclasses.replace(pcm, name="pcm-threaded", aliases=(), encode_inline=False)]


async def run(n: int, fmt: str = "pcm") -> list[float]:
    rt = build_runtime(parse_config({"stages": {"synthesizer": "silent"},
                                     "defaults": {"format": fmt}}), extra=[("silent", Plugin())])
    pipeline = Pipeline(rt)
    info = RequestInfo("POST", "/v1/tts/generate", {}, "127.0.0.1")
    req = GenerateRequest(text="Hello there. How are you today?")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        principal = await pipeline.admit(info)
        job = pipeline.prepare(req, f"r{i}", principal)
        async for _ in pipeline.audio(job):
            pass
        times.append((time.perf_counter() - t0) * 1000)
    await pipeline.drain()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000, help="per codec, over 5 rounds")
    args = ap.parse_args()
    rows = {"pcm": "pcm (inline)", "pcm-threaded": "pcm via worker thread"}
    times: dict[str, list[float]] = {fmt: [] for fmt in rows}
    for _ in range(5):  # interleaved rounds, the first 20% of each dropped as warm-up
        for fmt in rows:
            t = asyncio.run(run(args.requests // 5, fmt))
            times[fmt] += t[len(t) // 5:]
    print(f"{'encoding':<24}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for fmt, label in rows.items():
        t = times[fmt]
        q = statistics.quantiles(t, n=20)
        print(f"{label:<24}{len(t):>9}{statistics.median(t):>9.3f}{q[18]:>9.3f}"
              f"{statistics.mean(t):>9.3f}")


if __name__ == "__main__":
    main()
