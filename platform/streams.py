"""Starting a streamed response: its first bytes are made before the status line goes out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing


async def started(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Awaits ``stream``'s first piece now, so a failure to start raises here (a clean JSON
    error) rather than inside a 200; returns an iterator of that piece and the rest, which
    closes ``stream`` when it is closed."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await stream.aclose()
        raise
    return _prepend(first, stream)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async with aclosing(rest):
        if first:
            yield first
        async for chunk in rest:
            yield chunk
