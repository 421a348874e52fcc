"""A light HTTP/1.1 client for the benchmarks: one asyncio connection per request, the request
written by hand and the response parsed by httptools (uvicorn's own C parser).

Heavier clients put their own CPU time into the numbers they report: on the project's 2-core
VM httpx spent 150-300 ms just sending 50 requests. Connecting, sending and parsing all count in
the time to first byte here too.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httptools


@dataclass(slots=True)
class Result:
    status: int
    ttfb: float
    """Seconds from before connecting to the first body byte (0.0 when none came)."""
    total: float
    """Seconds from before connecting to the end of the body."""
    size: int
    complete: bool

    @property
    def ok(self) -> bool:
        """Status 200, the whole body and not an empty one."""
        return self.status == 200 and self.complete and self.size > 0


class _Response:
    """httptools callbacks: when the first body byte came, how many, whether it ended."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.size = 0
        self.complete = False

    def on_body(self, body: bytes) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.size += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


async def post(host: str, port: int, path: str, payload: dict) -> Result:
    """POSTs ``payload`` as JSON and reads the whole (streamed) response."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        body = json.dumps(payload).encode()
        writer.write(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s"
                     % (path.encode(), host.encode(), port, len(body), body))
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        while not response.complete and (data := await reader.read(65536)):
            parser.feed_data(data)
    finally:
        writer.close()
    ttfb = response.first - t0 if response.first is not None else 0.0
    return Result(parser.get_status_code(), ttfb, time.perf_counter() - t0, response.size,
                  response.complete)
