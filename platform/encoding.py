"""Runs an encoder over an audio stream without blocking the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

from veena.codecs.base import Encoder
from veena.platform.audio import PCM


async def encode_stream(stream: AsyncIterator[PCM], encoder: Encoder) -> AsyncIterator[bytes]:
    """Yields encoded bytes block by block; each block is encoded on a worker thread so one
    request's CPU-bound encoding never starves the other streams."""
    async with aclosing(stream):
        async for block in stream:
            data = await asyncio.to_thread(encoder.encode, block)
            if data:
                yield data
    tail = await asyncio.to_thread(encoder.finish)
    if tail:
        yield tail
