"""Time from the message that completes a sentence (or a ``flush``) to its first audio frame,
over ``WS /v1/tts/ws`` on loopback with the embedded voice.

    python tests/performance/bench_ws.py [--levels 1,50] [--rounds 10] [--format pcm]

Starts ``veena serve`` as a subprocess. Every socket, in each round, opens a fresh context,
sends a sentence as LLM-like tokens (a word at a time, 20 ms apart), the last token ending with
"." (no space after it: the server must see the end itself), stamps the time of that message,
and waits for the context's first audio frame; alternate rounds end with a token without
punctuation followed by ``flush``. It then ends the context and reads it to ``done`` (which
must say ``completed`` and carry audio) before the next round. Prints p50/p95/max per level.
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

SENTENCE = "Veena speaks this sentence as soon as the model has written its last word."


async def one_socket(url: str, rounds: int, fmt: str, out: list[float], errors: list[str]) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "format": fmt}))
        ready = json.loads(await ws.recv())
        if ready["type"] != "ready":
            errors.append(str(ready))
            return
        words = SENTENCE.split(" ")
        for r in range(rounds):
            cid = f"c{r}"
            flush = r % 2 == 1
            tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
            if flush:
                tokens[-1] = tokens[-1].rstrip(".")
            for tok in tokens[:-1]:
                await ws.send(json.dumps({"type": "text", "text": tok, "context_id": cid}))
                await asyncio.sleep(0.02)
            await ws.send(json.dumps({"type": "text", "text": tokens[-1], "context_id": cid}))
            if flush:
                await ws.send(json.dumps({"type": "flush", "context_id": cid}))
            t0 = time.perf_counter()
            first = None
            ended = False
            while True:
                msg = await asyncio.wait_for(ws.recv(), 60)
                if isinstance(msg, bytes):
                    if first is None:
                        first = time.perf_counter() - t0
                        await ws.send(json.dumps({"type": "end", "context_id": cid}))
                        ended = True
                    continue
                ev = json.loads(msg)
                if ev["type"] == "error":
                    errors.append(ev["code"])
                if ev["type"] == "done":
                    if ev["outcome"] != "completed" or not ev["bytes"] or not ended:
                        errors.append(str(ev))
                    break
            if first is not None:
                out.append(first * 1000)
        await ws.send(json.dumps({"type": "end"}))
        async for _ in ws:
            pass


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def level(url: str, n: int, rounds: int, fmt: str) -> None:
    out: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(one_socket(url, rounds, fmt, out, errors) for _ in range(n)))
    took = time.perf_counter() - t0
    print(f"{fmt} sockets={n:3d} rounds={rounds} samples={len(out)} "
          f"p50={statistics.median(out):.1f} ms p95={pct(out, 0.95):.1f} ms "
          f"max={max(out):.1f} ms wall={took:.1f} s errors={len(errors)} {errors[:3]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="1,50")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--format", default="pcm")
    args = p.parse_args()
    srv = Server()
    try:
        url = srv.url.replace("http://", "ws://") + "/v1/tts/ws"
        asyncio.run(level(url, 1, 2, args.format))  # warm-up
        for n in map(int, args.levels.split(",")):
            asyncio.run(level(url, n, args.rounds, args.format))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
