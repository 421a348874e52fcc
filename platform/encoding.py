"""Runs an encoder over an audio stream without blocking the event loop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import TYPE_CHECKING

from veena.codecs.base import Encoder
from veena.platform.audio import PCM

if TYPE_CHECKING:
    from veena.platform.job import Job

# Two pools. Blocks of streams that have sent no bytes yet never queue behind other streams'
# later audio, so a new request's first bytes do not wait for everyone else's backlog (as
# eSpeak NG serves new requests first). Later audio gets a thread a core but one, which
# leaves a core to the event loop and to first bytes; more threads than cores only add GIL
# hand-offs. Each stream has one block in flight at a time, so streams stay fair.
_CORES = os.cpu_count() or 1
FIRST_BYTES = ThreadPoolExecutor(_CORES, thread_name_prefix="veena-encode-first")
LATER = ThreadPoolExecutor(max(1, _CORES - 1), thread_name_prefix="veena-encode")


async def encode_stream(stream: AsyncIterator[PCM], open_encoder: Callable[[], Encoder],
                        job: Job | None = None, *, inline: bool = False) -> AsyncIterator[bytes]:
    """Yields encoded bytes block by block from the encoder ``open_encoder()`` makes.

    The encoder is made and fed on a worker thread (one of the two pools above), so one
    request's CPU-bound encoding never starves the other streams; making one can cost
    milliseconds too (a FLAC encoder zeroes about 4 MB). With ``inline`` (a codec whose blocks
    cost microseconds: raw PCM, G.711, WAV) all of it happens right here, where two thread
    hops would cost far more than the encoding. Encoder time is added to
    ``job.encode_seconds``."""
    loop = asyncio.get_running_loop()
    encoder: Encoder | None = None
    spent = 0.0
    sent = False

    def step(block: PCM | None) -> bytes:
        """Encodes ``block``, or finishes the stream for None."""
        nonlocal encoder, spent
        t0 = time.perf_counter()
        try:
            if encoder is None:
                encoder = open_encoder()
            return encoder.finish() if block is None else encoder.encode(block)
        finally:
            spent += time.perf_counter() - t0

    async def run(block: PCM | None) -> bytes:
        if inline:
            return step(block)
        return await loop.run_in_executor(LATER if sent else FIRST_BYTES, step, block)

    try:
        async with aclosing(stream):
            async for block in stream:
                data = await run(block)
                if data:
                    sent = True
                    yield data
        tail = await run(None)
        if tail:
            yield tail
    finally:
        if job is not None:
            job.encode_seconds += spent
