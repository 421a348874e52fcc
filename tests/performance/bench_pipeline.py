"""Pipeline overhead per request, excluding synthesis and encoding.

    python tests/performance/bench_pipeline.py

Runs admit -> prepare (normalize, chunk) -> synthesize -> process -> encode -> record in-process
with a voice that yields one precomputed block and the raw ``pcm`` codec at the voice's rate, so
what is timed is the platform's own work: hook dispatch, validation, job bookkeeping, the
worker-thread hop for encoding and the request record.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
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


async def run(n: int) -> list[float]:
    rt = build_runtime(parse_config({"stages": {"synthesizer": "silent"},
                                     "defaults": {"format": "pcm"}}), extra=[("silent", Plugin())])
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
    times = asyncio.run(run(3000))[500:]
    print(f"{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    q = statistics.quantiles(times, n=20)
    print(f"{len(times):>9}{statistics.median(times):>9.3f}{q[18]:>9.3f}{statistics.mean(times):>9.3f}")


if __name__ == "__main__":
    main()
