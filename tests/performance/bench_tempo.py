"""Cost of the atempo time-stretch (``veena.codecs.tempo``) and what ``speed`` does to the
embedded voice's duration.

    .venv/bin/python tests/performance/bench_tempo.py
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from veena.codecs.tempo import TempoStretcher
from veena.platform.config import VeenaConfig
from veena.platform.pipeline import Pipeline
from veena.platform.plugins import build_runtime
from veena.platform.schemas import GenerateRequest

TEXT = ("The quick brown fox jumps over the lazy dog. It was a bright cold day in April, and "
        "the clocks were striking thirteen.")


def stretch_cost(rate: int, factor: float, seconds: float = 30.0, block_s: float = 0.1) -> float:
    """Milliseconds of CPU per second of input audio, fed in ``block_s`` blocks."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(int(rate * seconds)) * 3000).astype(np.int16)
    step = int(rate * block_s)
    s = TempoStretcher(rate, factor)
    t = time.process_time()
    for i in range(0, len(x), step):
        s.push(x[i:i + step])
    s.finish()
    return (time.process_time() - t) * 1000 / seconds


async def durations() -> dict[float, float]:
    pipeline = Pipeline(build_runtime(VeenaConfig()))
    out = {}
    for speed in (1.0, 0.25, 0.5, 2.0, 4.0):
        job = pipeline.prepare(GenerateRequest(text=TEXT, format="pcm", speed=speed), "bench")
        async for _ in pipeline.audio(job, record=False):
            pass
        out[speed] = job.audio_seconds
    synth = pipeline.runtime.synthesizers.get("espeak")
    await asyncio.to_thread(synth.close)
    return out


def main() -> None:
    for rate in (16000, 22050):
        costs = ", ".join(f"{f:g}x {stretch_cost(rate, f):.2f}" for f in (0.25, 0.5, 1.5, 2.0, 4.0))
        print(f"atempo at {rate} Hz, ms CPU per audio second: {costs}")
    d = asyncio.run(durations())
    print("espeak duration ratio vs speed 1.0: " +
          ", ".join(f"{s:g} -> {d[s] / d[1.0]:.3f}" for s in (0.25, 0.5, 2.0, 4.0)))


if __name__ == "__main__":
    main()
