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


async def encode_stream(stream: AsyncIterator[PCM], encoder: Encoder,
                        job: Job | None = None) -> AsyncIterator[bytes]:
    """Yields encoded bytes block by block; each block is encoded on a worker thread so one
    request's CPU-bound encoding never starves the other streams. Encoder time is added to
    ``job.encode_seconds``."""
    spent = [0.0]

    def timed(fn: Callable[..., bytes], *args: PCM) -> bytes:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            spent[0] += time.perf_counter() - t0

    try:
        async with aclosing(stream):
            async for block in stream:
                data = await asyncio.to_thread(timed, encoder.encode, block)
                if data:
                    yield data
        tail = await asyncio.to_thread(timed, encoder.finish)
        if tail:
            yield tail
    finally:
        if job is not None:
            job.encode_seconds += spent[0]
