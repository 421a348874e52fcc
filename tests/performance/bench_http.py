"""Time to first byte through a real server on loopback with the embedded voice.

    python tests/performance/bench_http.py [--formats wav,opus] [--levels 1,10,50,100]
                                           [--client httpx|raw]

Starts ``veena serve`` as a subprocess, then for every format and concurrency level sends that
many streaming requests at once and prints p50/p95 time to first body byte, total time and errors.

The client shares the machine's cores with the server. ``httpx`` (the default) is what most
Python callers use, but it is heavy; ``raw`` (``raw_client.py``) is a lighter one for measuring
the server. Both count connecting, sending and parsing in the time to first byte, and both
check the status, that the body arrived complete, and that it was not empty.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import Server  # noqa: E402
from tests.performance.raw_client import post  # noqa: E402

TEXT = ("Veena streams speech while it is being synthesized. "
        "Every request passes each stage once, and the first audio leaves early.")
FORMATS = ["wav", "pcm", "mulaw", "alaw", "opus", "mp3", "flac", "aac"]


async def one(client: httpx.AsyncClient, fmt: str) -> tuple[float, float, bool]:
    t0 = time.perf_counter()
    ttfb = None
    async with client.stream("POST", "/v1/tts/generate", json={"text": TEXT, "format": fmt}) as r:
        if r.status_code != 200:
            return 0.0, 0.0, False
        async for _ in r.aiter_raw():
            if ttfb is None:
                ttfb = time.perf_counter() - t0
    return ttfb or 0.0, time.perf_counter() - t0, ttfb is not None


async def one_raw(host: str, port: int, fmt: str) -> tuple[float, float, bool]:
    r = await post(host, port, "/v1/tts/generate", {"text": TEXT, "format": fmt})
    return r.ttfb, r.total, r.ok


async def level(url: str, fmt: str, n: int, client: str = "httpx") -> dict[str, float]:
    if client == "raw":
        address = urlsplit(url)
        await one_raw(address.hostname, address.port, fmt)  # warm the encoder
        results = await asyncio.gather(*[one_raw(address.hostname, address.port, fmt)
                                         for _ in range(n)])
    else:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
            await one(http, fmt)  # warm the connection pool and the encoder
            results = await asyncio.gather(*[one(http, fmt) for _ in range(n)])
    ttfbs = sorted(r[0] * 1000 for r in results if r[2])
    totals = [r[1] * 1000 for r in results if r[2]]
    p95 = ttfbs[min(len(ttfbs) - 1, int(round(0.95 * (len(ttfbs) - 1))))] if ttfbs else float("nan")
    return {"p50": statistics.median(ttfbs) if ttfbs else float("nan"), "p95": p95,
            "total_p50": statistics.median(totals) if totals else float("nan"),
            "errors": sum(1 for r in results if not r[2])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--levels", default="1,10,50,100")
    ap.add_argument("--client", choices=["httpx", "raw"], default="httpx")
    args = ap.parse_args()
    server = Server()
    try:
        print(f"client {args.client}; load average {os.getloadavg()[0]:.2f}")
        print(f"{'format':<7}{'streams':>8}{'ttfb p50 ms':>13}{'ttfb p95 ms':>13}"
              f"{'total p50 ms':>14}{'errors':>8}")
        for fmt in args.formats.split(","):
            for n in map(int, args.levels.split(",")):
                r = asyncio.run(level(server.url, fmt, n, args.client))
                print(f"{fmt:<7}{n:>8}{r['p50']:>13.1f}{r['p95']:>13.1f}{r['total_p50']:>14.1f}"
                      f"{r['errors']:>8}", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
