"""RSS of a real `veena serve` over rounds of streams that clients cut (issue 14.7).

Each round sends ``--streams`` streamed requests of a 1,300-character text, ``--concurrency``
at a time, each read for 0-10 pieces of 4 KB and then reset; two seconds after the round the
server's RSS, open fds and active streams are printed.

    .venv/bin/python tests/performance/bench_disconnect_rss.py --formats mp3 --rounds 8
    .venv/bin/python tests/performance/bench_disconnect_rss.py --formats mp3,opus,aac,flac,wav

The server runs the code importable as ``veena`` (this checkout, or ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs far away into the "
        "woods. " * 15)[:1300]


async def cut_stream(port: int, fmt: str, reads: int) -> None:
    body = json.dumps({"text": TEXT, "stream": True, "format": fmt}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/tts/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    try:
        await writer.drain()
        for _ in range(reads):
            if not await reader.read(4096):
                break
    finally:
        writer.transport.abort()


def status(pid: int) -> tuple[float, int]:
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status")
               if line.startswith("VmRSS:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def rounds(port: int, pid: int, args: argparse.Namespace) -> list[float]:
    sem = asyncio.Semaphore(args.concurrency)
    formats = args.formats.split(",")

    async def one() -> None:
        async with sem:
            await cut_stream(port, random.choice(formats), random.randint(0, 10))
    curve = [status(pid)[0]]
    print(f"start: rss {curve[0]:.0f} MB", flush=True)
    async with httpx.AsyncClient() as client:
        for k in range(args.rounds):
            t0 = time.perf_counter()
            await asyncio.gather(*[one() for _ in range(args.streams)])
            await asyncio.sleep(2)
            rss, fds = status(pid)
            active = (await client.get(f"http://127.0.0.1:{port}/v1/tts/health")).json()
            curve.append(rss)
            print(f"round {k + 1}: rss {rss:.0f} MB, fds {fds}, active streams "
                  f"{active['active_streams']}, {time.perf_counter() - t0:.1f} s", flush=True)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--formats", default="mp3")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--streams", type=int, default=150)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    random.seed(args.seed)
    from tests.support.services import free_port

    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="veena-rss-")) / "data"
    env = {**os.environ, "VEENA_DATA_DIR": str(data)}
    log = open(data.parent / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "veena.platform.cli", "serve", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/tts/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the server did not start; see {data.parent}/server.log")
            time.sleep(0.2)
        curve = asyncio.run(rounds(port, proc.pid, args))
        print("curve (MB):", " -> ".join(f"{v:.0f}" for v in curve))
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
