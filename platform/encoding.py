"""Runs an encoder over an audio stream without blocking the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING

from veena.codecs.base import Encoder
from veena.platform.audio import PCM

if TYPE_CHECKING:
    from veena.platform.job import Job


async def encode_stream(stream: AsyncIterator[PCM], encoder: Encoder, job: Job | None = None,
                        *, inline: bool = False) -> AsyncIterator[bytes]:
    """Yields encoded bytes block by block. Each block is encoded on a worker thread, so one
    request's CPU-bound encoding never starves the other streams; with ``inline`` (a codec
    whose blocks cost microseconds: raw PCM, G.711, WAV) it is encoded right here, where two
    thread hops would cost far more than the encoding. Encoder time is added to
    ``job.encode_seconds``."""
    loop = asyncio.get_running_loop()
    spent = 0.0

    def timed(fn: Callable[..., bytes], *args: PCM) -> bytes:
        nonlocal spent
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            spent += time.perf_counter() - t0

    async def run(fn: Callable[..., bytes], *args: PCM) -> bytes:
        if inline:
            return timed(fn, *args)
        return await loop.run_in_executor(None, timed, fn, *args)

    try:
        async with aclosing(stream):
            async for block in stream:
                data = await run(encoder.encode, block)
                if data:
                    yield data
        tail = await run(encoder.finish)
        if tail:
            yield tail
    finally:
        if job is not None:
            job.encode_seconds += spent
