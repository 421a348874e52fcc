"""The WebSocket's time to first audio with the Veena3 voice on a GPU, next to the HTTP time to
first byte of the same sentence on the same server.

    python tests/performance/bench_spark_ws.py [--ckpt DIR] [--levels 1,8] [--rounds 6]
        [--spark KEY=VALUE ...]

Starts ``veena serve`` with the spark voice (a full-size random checkpoint, the benchmark voice
with pinned global tokens as the default speaker), then per level runs ``bench_ws.level`` (the
completing message of a sentence to its first audio frame, ``pcm``) and as many sequential HTTP
requests of the same sentence (request sent to first body byte, raw client). Random weights
rarely choose a stop token, so each sentence runs to the run-away guard: ``--spark
max_tokens_per_char=2`` keeps that to 150 tokens (3 s), which changes nothing before the first
audio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.performance.bench_spark_http import GpuServer, write_voice  # noqa: E402
from tests.performance.bench_ws import SENTENCE, level, pct  # noqa: E402
from tests.performance.raw_client import post  # noqa: E402


async def http_ttfb(port: int, n: int) -> list[float]:
    """Time to first byte (ms) of ``n`` sequential requests for the WebSocket's sentence."""
    out = []
    for i in range(n):
        r = await post("127.0.0.1", port, "/v1/tts/generate",
                       {"text": SENTENCE, "speaker": "bench", "format": "pcm", "seed": i})
        if not r.ok:
            raise RuntimeError(f"status {r.status}, {r.size} bytes")
        out.append(r.ttfb * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--levels", default="1,8")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--spark", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    from veena.plugins.spark.checkpoint import write_random_checkpoint

    work = Path(tempfile.mkdtemp(prefix="veena-bench-ws-"))
    ckpt = args.ckpt or work / "veena3-full"
    if not (ckpt / "LLM").exists():
        write_random_checkpoint(ckpt, "full")
    voices = write_voice(work / "voices")
    extra = "".join(f"{k.strip()} = {v.strip()}\n"
                    for k, _, v in (o.partition("=") for o in args.spark))
    config = (f'[stages]\nsynthesizer = "spark"\n[defaults]\nspeaker = "bench"\n'
              f'[plugins.spark]\nmodel_path = "{ckpt}"\n{extra}'
              f'[plugins.catalog]\nfolders = ["{voices}"]\n')
    server = GpuServer(config, tmp=work)
    try:
        url = server.url.replace("http://", "ws://") + "/v1/tts/ws"
        asyncio.run(level(url, 1, 2, "pcm"))  # warm-up
        for n in (int(x) for x in args.levels.split(",")):
            asyncio.run(level(url, n, args.rounds, "pcm"))
            http = asyncio.run(http_ttfb(server.port, args.rounds))
            print(f"http sequential requests={len(http)} p50={statistics.median(http):.1f} ms "
                  f"p95={pct(http, 0.95):.1f} ms max={max(http):.1f} ms", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
