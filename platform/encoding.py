"""Runs an encoder over an audio stream without blocking the event loop."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING

from veena.codecs.base import Encoder
from veena.platform.audio import PCM
from veena.platform.memory import TRIMMER
from veena.platform.workers import PriorityWorkers

if TYPE_CHECKING:
    from veena.platform.job import Job

log = logging.getLogger("veena.encoding")

ENCODERS = PriorityWorkers((os.cpu_count() or 1) - 1, "veena-encode")
"""A thread a core but one (at least one), which leaves a core to the event loop and the
synthesizer. Blocks of streams that have sent no bytes yet go first, so a new request's first
bytes never wait for other streams' later audio (as eSpeak NG serves new requests first).
Each stream has one block in flight at a time, so streams stay fair. On the 2-core VM one
thread with this order beat the two pools it replaced (a thread per core for first bytes,
one for later audio): more runnable threads only took CPU and the GIL from eSpeak NG and the
loop (docs/benchmarks.md)."""


async def encode_stream(stream: AsyncIterator[PCM], open_encoder: Callable[[], Encoder],
                        job: Job | None = None, *, inline: bool = False) -> AsyncIterator[bytes]:
    """Yields encoded bytes block by block from the encoder ``open_encoder()`` makes.

    The encoder is made and fed on a worker thread (``ENCODERS``), so one
    request's CPU-bound encoding never starves the other streams; making one can cost
    milliseconds too (a FLAC encoder zeroes about 7 MB). With ``inline`` (a codec whose blocks
    cost microseconds: raw PCM, G.711, WAV) all of it happens right here, where two thread
    hops would cost far more than the encoding. Encoder time is added to
    ``job.encode_seconds``."""
    encoder: Encoder | None = None
    spent = 0.0
    sent = False
    closed = False
    # A step whose await was cancelled (the client left) may still be running on its worker;
    # the lock keeps the encoder's release from overlapping it.
    lock = threading.Lock()

    def step(block: PCM | None) -> bytes:
        """Encodes ``block``, or finishes the stream for None."""
        nonlocal encoder, spent
        with lock:
            if closed:
                return b""  # the stream was cut: nothing more is made for it
            t0 = time.perf_counter()
            try:
                if encoder is None:
                    encoder = open_encoder()
                return encoder.finish() if block is None else encoder.encode(block)
            finally:
                spent += time.perf_counter() - t0

    def release(_: object = None) -> None:
        """Frees the encoder of a stream that ended without ``finish`` (client gone, error)."""
        nonlocal encoder, closed
        with lock:
            closed = True
            held, encoder = encoder, None
        if held is not None:
            close_encoder(held)

    async def run(block: PCM | None) -> bytes:
        if inline:
            return step(block)
        return await ENCODERS.run(step, block, urgent=not sent)

    finished = False
    TRIMMER.start()
    try:
        async with aclosing(stream):
            async for block in stream:
                data = await run(block)
                if data:
                    sent = True
                    yield data
        tail = await run(None)
        finished = True
        if tail:
            yield tail
    finally:
        if not finished:
            # On the thread that fed it (or here, for inline codecs): the codec's buffers go
            # back now, where they were allocated, not whenever the garbage collector finds
            # the cut stream's frames (docs/benchmarks.md, "Memory after disconnect storms").
            try:
                if inline:
                    release()
                else:
                    ENCODERS.run(release, None, urgent=False)
            except RuntimeError:  # no running loop (finalized at exit): free it here
                release()
        if job is not None:
            job.encode_seconds += spent
        TRIMMER.request()  # what this stream's codec held is free now: give it back


def close_encoder(encoder: Encoder) -> None:
    """Frees an encoder that will not be finished, through its optional ``close()``; a failure
    is logged, never raised (the stream it belonged to is over)."""
    close = getattr(encoder, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:  # noqa: BLE001 - nobody is left to tell
        log.warning("closing a %s failed", type(encoder).__name__, exc_info=True)
