"""The token stream both torch engines hand out: ids delivered from the worker thread to an
asyncio queue on the loop that submitted the request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from veena.plugins.spark.engine.base import FinishReason, TokenRequest

_events = logging.getLogger("veena.events")


class End:
    """The last item of a stream: why it ended."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class QueueTokenStream:
    """Generated ids of one request; ``abort()`` marks it for the worker to drop."""

    def __init__(self, request: TokenRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.finish_reason: str | None = None
        self.aborted = False
        self.generated = 0
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False

    def __aiter__(self) -> QueueTokenStream:
        return self

    async def __anext__(self) -> int:
        if self._closed:
            raise StopAsyncIteration
        item = await self.queue.get()
        if isinstance(item, int):
            return item
        self._closed = True
        if isinstance(item, End):
            self.finish_reason = self.finish_reason or item.reason
            raise StopAsyncIteration
        raise item

    def abort(self) -> None:
        if self.finish_reason is None:
            self.finish_reason = FinishReason.ABORTED
        self.aborted = True  # read by the worker before the request's next step

    def deliver(self, item: Any) -> None:
        """Worker thread: hands one id, an ``End`` or an exception to the stream's loop."""
        deliver_all([(self, item)])


def deliver_all(items: Iterable[tuple[QueueTokenStream, Any]]) -> None:
    """Worker thread: hands items to their streams with one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[QueueTokenStream, Any]]] = {}
    for stream, item in items:
        by_loop.setdefault(stream.loop, []).append((stream, item))
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, batch)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            for stream, _ in batch:
                stream.aborted = True


def _put_all(batch: list[tuple[QueueTokenStream, Any]]) -> None:
    for stream, item in batch:
        stream.queue.put_nowait(item)


def log_abort(req: TokenRequest, generated: int, active: int, started: float) -> None:
    """The ``spark.engine_aborted`` event for a request dropped before it finished."""
    _events.info("spark.engine_aborted", extra={
        "request_id": req.request_id.split(":", 1)[0], "engine_request": req.request_id,
        "generated": generated, "max_new_tokens": req.max_new_tokens, "active": active,
        "ms": round((time.perf_counter() - started) * 1000, 1)})
