"""Issue 14.7: a stream that ends before its encoder finished (client gone, error) frees the
encoder at once, on the thread that fed it; the heap trimmer collects cyclic garbage and gives
freed memory back."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref

import numpy as np
import pytest

from veena.codecs.catalog import CODECS
from veena.platform.audio import PCM
from veena.platform.encoding import encode_stream
from veena.platform.memory import HeapTrimmer


def block(n: int = 1600, rate: int = 16000) -> PCM:
    return PCM((np.sin(np.arange(n) / 7) * 8000).astype(np.int16), rate)


class Counting:
    """An encoder that records which thread called what."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def encode(self, b: PCM) -> bytes:
        self.calls.append(("encode", threading.current_thread().name))
        return b"x" * 10

    def finish(self) -> bytes:
        self.calls.append(("finish", threading.current_thread().name))
        return b"end"

    def close(self) -> None:
        self.calls.append(("close", threading.current_thread().name))


async def pcm(count: int):
    for _ in range(count):
        yield block()
        await asyncio.sleep(0)


@pytest.mark.parametrize("inline", [False, True])
def test_a_cut_stream_closes_its_encoder(inline):
    enc = Counting()

    async def main():
        out = encode_stream(pcm(50), lambda: enc, inline=inline)
        assert await anext(out)
        await anext(out)
        await out.aclose()  # the client left
        for _ in range(100):
            if ("close" in [c for c, _ in enc.calls]):
                break
            await asyncio.sleep(0.01)
    asyncio.run(main())
    names = [c for c, _ in enc.calls]
    assert names[-1] == "close" and "finish" not in names
    if not inline:  # closed where it was fed, never on the event loop
        assert {t for _, t in enc.calls} == {t for c, t in enc.calls if c == "encode"}
        assert all(t.startswith("veena-encode") for _, t in enc.calls)


def test_a_finished_stream_is_not_closed_again_and_a_failed_one_is():
    done, failed = Counting(), Counting()

    async def broken():
        yield block()
        raise RuntimeError("synthesis failed")

    async def main():
        assert [c async for c in encode_stream(pcm(3), lambda: done)][-1] == b"end"
        with pytest.raises(RuntimeError):
            async for _ in encode_stream(broken(), lambda: failed):
                pass
        await asyncio.sleep(0.2)
    asyncio.run(main())
    assert [c for c, _ in done.calls][-1] == "finish"
    assert "close" not in [c for c, _ in done.calls]
    assert [c for c, _ in failed.calls][-1] == "close"


@pytest.mark.parametrize("codec", [c.name for c in CODECS])
@pytest.mark.parametrize("streaming", [True, False])
def test_every_codec_closes_mid_stream_without_a_trailer(codec, streaming):
    c = next(x for x in CODECS if x.name == codec)
    rate = 16000 if 16000 in c.sample_rates else c.sample_rates[0]
    enc = c.open(rate, streaming=streaming)
    for _ in range(5):
        enc.encode(block())
    enc.close()
    enc.close()  # idempotent
    enc = c.open(rate, streaming=streaming)
    enc.close()  # before any audio
    whole = c.open(rate, streaming=streaming)
    whole.encode(block())
    whole.finish()
    whole.close()  # after finish: nothing left to free, no error


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle, as PyAV's filter graphs are
        self.payload = bytearray(1 << 20)


def test_the_trimmer_collects_cycles_after_a_request():
    trimmer = HeapTrimmer(interval_s=0.05)
    gc.disable()
    try:
        trimmer.start()
        node = Node()
        gone = weakref.ref(node)
        del node
        assert gone() is not None  # only the collector can free it
        trimmer.request()
        deadline = time.monotonic() + 5
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gone() is None and trimmer.trims >= 1
        before = trimmer.trims
        time.sleep(0.3)
        assert trimmer.trims == before  # nothing asked: nothing done
    finally:
        trimmer.stop()
        gc.enable()
        gc.unfreeze()
