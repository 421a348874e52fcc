"""One socket of ``WS /v1/tts/ws``: authentication, the message loop, contexts, and one writer
that sends every event and audio frame in order with a bound on unsent audio."""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from typing import Any

import msgspec
from litestar.connection import WebSocket

from veena.platform import lifecycle
from veena.platform.errors import VeenaError
from veena.platform.job import OutputFormat, Principal
from veena.platform.logs import event, request_id_var
from veena.platform.pipeline import Pipeline, new_request_id
from veena.platform.runtime import RequestInfo
from veena.plugins.websocket.config import Config
from veena.plugins.websocket.context import Context
from veena.plugins.websocket.protocol import Cancel, End, Flush, Start, Text, parse, request
from veena.plugins.websocket.segmenter import Segmenter

CLOSE_NORMAL, CLOSE_TOO_BIG, CLOSE_INTERNAL = 1000, 1009, 1011
CLOSE_IDLE = 4408
"""Errors close with 4000 + the HTTP status of their code (4400, 4401, 4403, 4429, 4503...)."""


class Closed(Exception):
    """The socket is to close with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Session:
    def __init__(self, socket: WebSocket, pipeline: Pipeline, cfg: Config) -> None:
        self.socket, self.pipeline, self.cfg = socket, pipeline, cfg
        self.request_id = new_request_id(socket.headers.get("x-request-id"))
        self.contexts: dict[str, Context] = {}
        self.start: Start | None = None
        self.output: OutputFormat | None = None
        self.principal: Principal | None = None
        self._jobs = 0
        self._cancels: set[asyncio.Task[None]] = set()
        """Cancellations under way (their contexts left ``contexts``; ``done`` still to come)."""
        self._out: deque[tuple[str, bytes | None, Context | None, int]] = deque()
        self._unsent = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._open = True
        self._ending = False

    # --- outbound ------------------------------------------------------------------------------

    async def send_event(self, body: dict[str, Any]) -> None:
        if self._open:
            self._out.append((msgspec.json.encode(body).decode(), None, None, 0))
            self._wake.set()

    async def send_audio(self, ctx: Context, data: bytes) -> None:
        """Queues one audio frame; waits while more than ``max_unsent_bytes`` are queued, which
        pauses this context's synthesis (backpressure; ``Context`` also bounds how far its
        synthesis runs ahead of the socket in audio seconds)."""
        while self._open and self._unsent > self.cfg.max_unsent_bytes:
            self._room.clear()
            await self._room.wait()
        if not self._open:
            raise asyncio.CancelledError
        assert self.start is not None
        head: dict[str, Any] = {"type": "audio", "context_id": ctx.id, "bytes": len(data)}
        mark = ctx.stats.samples
        if self.start.binary:
            self._out.append((msgspec.json.encode(head).decode(), data, ctx, mark))
        else:
            head["audio"] = base64.b64encode(data).decode()
            self._out.append((msgspec.json.encode(head).decode(), None, ctx, mark))
        self._unsent += len(data)
        ctx.queued_audio += 1
        self._wake.set()

    async def _writer(self) -> None:
        """Sends everything queued, in order. When the socket breaks, stops every context (a
        client gone is a cancel)."""
        try:
            await self._write()
        except Exception:  # noqa: BLE001 - the peer went away mid-send
            self._open = False
            self._room.set()
            for ctx in self.contexts.values():
                ctx.task.cancel()

    async def _write(self) -> None:
        while True:
            while not self._out:
                self._wake.clear()
                await self._wake.wait()
            text, data, ctx, mark = self._out.popleft()
            await self.socket.send_text(text)
            if data is not None:
                await self.socket.send_bytes(data)
            if ctx is not None:
                self._unsent -= ctx_bytes(text, data)
                ctx.queued_audio -= 1
                ctx.delivered(mark)
                self._room.set()

    async def _drain_out(self) -> None:
        while self._out:
            await asyncio.sleep(0.005)

    # --- the socket ----------------------------------------------------------------------------

    async def serve(self) -> None:
        request_id_var.set(self.request_id)
        await self.socket.accept()
        writer = asyncio.get_running_loop().create_task(self._writer())
        code, reason = CLOSE_NORMAL, "done"
        try:
            await self._open_session()
            await self._loop()
            await self._finish_all()
        except Closed as exc:
            code, reason = exc.code, exc.reason
        except VeenaError as exc:
            await self._error(exc)
            code, reason = 4000 + exc.status, exc.code
        except _Disconnected:
            code = 0
        finally:
            for ctx in list(self.contexts.values()):
                await ctx.cancel()
            await asyncio.gather(*self._cancels, return_exceptions=True)
            if code and not writer.done():
                try:
                    await asyncio.wait_for(self._drain_out(), self.cfg.close_drain_s)
                except TimeoutError:
                    pass
            self._open = False
            self._room.set()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            event("ws.closed", code=code, reason=reason, jobs=self._jobs)
            if code:
                try:
                    await self.socket.close(code, reason)
                except Exception:  # noqa: BLE001 - the peer may be gone already
                    pass

    async def _receive(self, timeout: float | None) -> str | bytes:
        try:
            msg = await asyncio.wait_for(self.socket.receive(), timeout)
        except TimeoutError:
            raise  # the caller decides (idle or not)
        except Exception as exc:  # the connection broke
            raise _Disconnected from exc
        if msg["type"] == "websocket.disconnect":
            raise _Disconnected
        data = msg.get("text")
        if data is None:
            data = msg.get("bytes") or b""
        if len(data) > self.cfg.max_message_bytes:
            await self._error(VeenaError(
                "message_too_large", f"a message may have at most {self.cfg.max_message_bytes} "
                "bytes", 400, max_bytes=self.cfg.max_message_bytes))
            raise Closed(CLOSE_TOO_BIG, "message_too_large")
        return data

    async def _open_session(self) -> None:
        try:
            first = await self._receive(self.cfg.idle_timeout_s)
        except TimeoutError:
            raise Closed(CLOSE_IDLE, "idle_timeout") from None
        start = parse(first)
        if not isinstance(start, Start):
            raise VeenaError("start_required", "the first message must be {\"type\": \"start\"}")
        lifecycle.check_accepting(self.pipeline.runtime)
        headers = dict(self.socket.headers)
        if start.api_key:
            headers.pop("authorization", None)
            headers["x-api-key"] = start.api_key
        client = self.socket.client.host if self.socket.client else None
        self.principal = await self.pipeline.admit(RequestInfo(
            method="GET", path=self.socket.url.path, headers=headers, client_host=client))
        probe = self.pipeline.prepare(request(start, "a", normalize=False), self.request_id,
                                      self.principal)
        self.start, self.output = start, probe.output
        codec = probe.output.codec
        event("ws.opened", key_id=self.principal.key_id if self.principal else None,
              format=codec.name, sample_rate=probe.output.sample_rate,
              voice=probe.speaker.name)
        await self.send_event({
            "type": "ready", "request_id": self.request_id, "voice": probe.speaker.name,
            "format": codec.name, "media_type": codec.media_type,
            "sample_rate": probe.output.sample_rate, "binary": start.binary,
            "max_wait_ms": round(self.cfg.max_wait_s * 1000)})

    async def _loop(self) -> None:
        while not self._ending:
            try:
                data = await self._receive(self.cfg.idle_timeout_s)
            except TimeoutError:
                if any(not c.task.done() for c in self.contexts.values()) or self._cancels:
                    continue  # still speaking: not idle
                raise Closed(CLOSE_IDLE, "idle_timeout") from None
            try:
                self._handle(parse(data))
            except VeenaError as exc:
                await self._error(exc)

    def _handle(self, msg: Any) -> None:
        if isinstance(msg, Start):
            raise VeenaError("already_started", "the session has started already")
        if isinstance(msg, Text):
            ctx = self._context(msg.context_id)
            if ctx.unspoken + len(msg.text) > self.cfg.max_buffered_chars:
                raise VeenaError("text_buffer_full", f"context {ctx.id!r} holds more than "
                                 f"{self.cfg.max_buffered_chars} unspoken characters; wait for "
                                 "its audio", 400, context_id=ctx.id,
                                 max_chars=self.cfg.max_buffered_chars)
            ctx.feed(msg.text)
        elif isinstance(msg, Flush):
            self._context(msg.context_id).flush()
        elif isinstance(msg, End):
            if msg.context_id is None:
                for ctx in self.contexts.values():
                    if not ctx.ended:
                        ctx.end()
                self._ending = True
            elif (ctx := self.contexts.get(msg.context_id)) is not None and not ctx.ended:
                ctx.end()
        elif isinstance(msg, Cancel):
            targets = list(self.contexts) if msg.context_id is None else [msg.context_id]
            for cid in targets:
                ctx = self.contexts.pop(cid, None)
                if ctx is not None:
                    self._drop_audio(ctx)
                    task = asyncio.get_running_loop().create_task(ctx.cancel())
                    self._cancels.add(task)
                    task.add_done_callback(self._cancels.discard)

    def _drop_audio(self, ctx: Context) -> None:
        """Takes a cancelled context's audio that has not gone out yet off the queue."""
        kept = [item for item in self._out if item[2] is not ctx]
        for text, data, c, _ in self._out:
            if c is ctx:
                self._unsent -= ctx_bytes(text, data)
                ctx.queued_audio -= 1
        self._out = deque(kept)
        self._room.set()

    def _context(self, cid: str) -> Context:
        ctx = self.contexts.get(cid)
        if ctx is not None and ctx.task.done():
            del self.contexts[cid]  # finished: the id can be used again
            ctx = None
        if ctx is not None:
            if ctx.ended:
                raise VeenaError("context_ended", f"context {cid!r} has ended; it takes no more "
                                 "text", 400, context_id=cid)
            return ctx
        live = sum(not c.task.done() for c in self.contexts.values())
        if live >= self.cfg.max_contexts:
            raise VeenaError("too_many_contexts", f"a socket may have at most "
                             f"{self.cfg.max_contexts} open contexts", 400,
                             max_contexts=self.cfg.max_contexts)
        assert self.start is not None and self.output is not None
        ctx = Context(cid, pipeline=self.pipeline, start=self.start, output=self.output,
                      principal=self.principal, new_request_id=self._next_rid,
                      send_event=self.send_event, send_audio=self.send_audio,
                      segmenter=Segmenter(self.cfg.clause_chars, self.cfg.max_segment_chars),
                      max_wait_s=self.cfg.max_wait_s, max_ahead_s=self.cfg.max_ahead_s)
        self.contexts[cid] = ctx
        return ctx

    def _next_rid(self) -> str:
        self._jobs += 1
        return f"{self.request_id}-{self._jobs}"

    async def _finish_all(self) -> None:
        tasks = [c.task for c in self.contexts.values()] + list(self._cancels)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _error(self, exc: VeenaError) -> None:
        await self.send_event({"type": "error", "code": exc.code, "message": exc.message,
                               "request_id": self.request_id, **exc.details})


def ctx_bytes(text: str, data: bytes | None) -> int:
    """The audio bytes an outgoing frame carries."""
    return len(data) if data is not None else msgspec.json.decode(text)["bytes"]


class _Disconnected(Exception):
    """The client went away."""

