"""Time from the message that completes a sentence (or a ``flush``) to its first audio, over
ElevenLabs' ``multi-stream-input`` and, in the same run, Veena's own ``/v1/tts/ws``: what the
translating socket adds.

    python tests/performance/bench_elevenlabs_ws.py [--levels 1,10] [--rounds 20] [--format pcm]

Starts ``veena serve`` as a subprocess (embedded voice). Every ElevenLabs socket, in each round,
opens a fresh context, sends ``bench_ws.SENTENCE`` a word at a time (20 ms apart), the last word
ending with "." or, in alternate rounds, without punctuation and with ``flush``; the time runs
from that message to the context's first audio message. The context is then closed and read to
its ``isFinal``. Veena's socket is timed the same way by ``bench_ws.one_socket``; the two kinds
alternate level by level. Prints p50/p95/max per level and route.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import Server  # noqa: E402
from tests.performance.bench_ws import SENTENCE, one_socket, pct  # noqa: E402

FORMATS = {"pcm": "pcm_22050", "mp3": "mp3_44100_128"}


async def one_elevenlabs(url: str, rounds: int, out: list[float], errors: list[str]) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "warm"}))
        words = SENTENCE.split(" ")
        for r in range(rounds):
            cid, flush = f"c{r}", r % 2 == 1
            tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
            if flush:
                tokens[-1] = tokens[-1].rstrip(".")
            for tok in tokens[:-1]:
                await ws.send(json.dumps({"text": tok, "context_id": cid}))
                await asyncio.sleep(0.02)
            await ws.send(json.dumps({"text": tokens[-1], "context_id": cid, "flush": flush}))
            t0, first = time.perf_counter(), None
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if "message" in msg:
                    errors.append(msg["error"])
                elif msg.get("isFinal") and msg.get("contextId") == cid:
                    break
                elif msg.get("audio") and msg.get("contextId") == cid and first is None:
                    first = time.perf_counter() - t0
                    await ws.send(json.dumps({"context_id": cid, "close_context": True}))
            if first is None:
                errors.append(f"no audio in round {r}")
            else:
                out.append(first * 1000)
        await ws.send(json.dumps({"close_socket": True}))
        async for _ in ws:
            pass


async def level(kind: str, url: str, n: int, rounds: int, fmt: str) -> None:
    out: list[float] = []
    errors: list[str] = []
    if kind == "elevenlabs":
        jobs = [one_elevenlabs(url, rounds, out, errors) for _ in range(n)]
    else:
        jobs = [one_socket(url, rounds, fmt, out, errors) for _ in range(n)]
    await asyncio.gather(*jobs)
    print(f"{kind:10s} {fmt} sockets={n:3d} samples={len(out)} "
          f"p50={statistics.median(out):.1f} ms p95={pct(out, 0.95):.1f} ms "
          f"max={max(out):.1f} ms errors={len(errors)} {errors[:3]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="1,10")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--format", default="pcm", choices=sorted(FORMATS))
    args = p.parse_args()
    srv = Server()
    try:
        ws = srv.url.replace("http://", "ws://")
        urls = {"elevenlabs": f"{ws}/v1/text-to-speech/kavya/multi-stream-input?output_format="
                              f"{FORMATS[args.format]}",
                "veena": f"{ws}/v1/tts/ws"}
        for kind, url in urls.items():  # warm-up
            asyncio.run(level(kind, url, 1, 2, args.format))
        for n in map(int, args.levels.split(",")):
            for kind, url in urls.items():
                asyncio.run(level(kind, url, n, args.rounds, args.format))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
