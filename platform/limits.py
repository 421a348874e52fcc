"""Request guard (ASGI): header and body size limits, bodies too deeply nested, clients that
leave before the body is read.

It runs inside the telemetry middleware, before Litestar, and reads a request's body at once
(bounded by ``server.max_body_bytes``) so that:

- headers larger than ``server.max_header_bytes`` get 431 ``headers_too_large``;
- a ``Content-Length`` or a (chunked) body over ``server.max_body_bytes`` gets 413
  ``body_too_large`` without reading further;
- a JSON body nested too deeply for the decoder (``RecursionError``) gets 400 ``json_too_deep``
  on every route, before authentication, instead of a 500;
- a client that closes before its body was read (the server learns of the close first and the
  body is gone) is not a server error: no response, counted as status 499 (nginx's "client
  closed request") and, on a synthesis route, recorded as outcome ``cancelled`` with error code
  ``client_closed`` (its text never reached the application, so it is stored empty);
- on a synthesis route, a client that closes after its body was read but before the response
  started is seen at once (the connection is watched while the handler runs): the handler is
  cancelled (a whole-body synthesis does not run on for nobody), nothing is answered, the
  request counts as status 499 and is recorded as ``cancelled`` with its text (by the pipeline
  when synthesis had begun, else here, with error code ``client_closed``). After the response
  started, a close ends the stream as before (outcome ``cancelled``, counted under its status).

Every answer uses the JSON error shape ``{"error": {...}}`` with the request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from veena.platform.errors import VeenaError
from veena.platform.logs import event
from veena.platform.pipeline import new_request_id
from veena.platform.runtime import RequestRecord, Runtime

log = logging.getLogger("veena.limits")
SYNTHESIS_FLAG = "veena_synthesis"
SYNTHESIS_OPT = {SYNTHESIS_FLAG: True}
"""``opt=`` of a route that synthesizes (core or plugin): a client that leaves before its body
was read is recorded as a cancelled request."""

_DEPTH_HINT = 64
"""Bodies with fewer brackets than this cannot be nested deeply enough to matter."""


class RequestGuard:
    """See the module docstring; requests of routes marked ``SYNTHESIS_OPT`` are recorded
    (``veena_request_finished``) when the client leaves before its body was read."""

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        server = runtime.config.server
        self.max_body = server.max_body_bytes
        self.max_headers = server.max_header_bytes
        self._background: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        if sum(len(k) + len(v) + 4 for k, v in headers) > self.max_headers:
            await self._refuse(scope, send, VeenaError(
                "headers_too_large", f"request headers exceed {self.max_headers} bytes", 431))
            return
        length = _content_length(headers)
        if length is not None and length > self.max_body:
            await self._refuse(scope, send, _too_large(self.max_body))
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._client_closed(scope)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._refuse(scope, send, _too_large(self.max_body))
                return
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        if body.count(b"[") + body.count(b"{") >= _DEPTH_HINT and _too_deep(body):
            await self._refuse(scope, send, VeenaError(
                "json_too_deep", "the JSON body is nested too deeply", 400))
            return
        if not _synthesis(scope):
            await self.app(scope, _replay(body, receive), send)
            return
        await self._watched(scope, body, receive, send)

    async def _watched(self, scope: dict, body: bytes, receive: Callable,
                       send: Callable) -> None:
        """Runs a synthesis route's handler while watching for the client's close; a close
        before the response started cancels the handler (see the module docstring)."""
        started = False

        async def send_and_watch(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        # With the body read, the connection's only event left is its close (ASGI servers
        # answer every later receive with http.disconnect, once closed or answered).
        app = asyncio.ensure_future(self.app(scope, _replay(body, receive), send_and_watch))
        gone = asyncio.ensure_future(_closed(receive))
        try:
            await asyncio.wait((app, gone), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            app.cancel()
            gone.cancel()
            raise
        if app.done() or started:
            gone.cancel()
            await app  # its own result or error; a close after the headers is the route's
            return
        app.cancel()
        await asyncio.gather(app, return_exceptions=True)
        if started:
            return  # the answer had begun after all: counted under its status
        rid = _request_id(scope)
        state = scope.setdefault("state", {})
        state["client_closed"] = True
        event("tts.client_closed", request_id=rid, path=scope.get("path", ""), before="headers")
        if not state.get("format"):  # set once the pipeline prepared the job, which records it
            self._spawn_record(rid, _text_of(body))

    async def _refuse(self, scope: dict, send: Callable, error: VeenaError) -> None:
        rid = _request_id(scope)
        event("tts.error", request_id=rid, code=error.code, status=error.status)
        payload = msgspec.json.encode(error.body(rid))
        await send({"type": "http.response.start", "status": error.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", rid.encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    def _client_closed(self, scope: dict) -> None:
        rid = _request_id(scope)
        scope.setdefault("state", {})["client_closed"] = True
        event("tts.client_closed", request_id=rid, path=scope.get("path", ""), before="body")
        if _synthesis(scope):
            self._spawn_record(rid, "")

    def _spawn_record(self, rid: str, text: str) -> None:
        """Records a synthesis request that ended before the pipeline saw it (no key known:
        authentication had not finished)."""
        defaults = self.runtime.config.defaults
        record = RequestRecord(
            request_id=rid, key_id=None, speaker=defaults.speaker,
            synthesizer=self.runtime.config.stages.synthesizer, format=defaults.format,
            sample_rate=0, stream=True, original_text=text, normalized_text="", chunks=0,
            chars_requested=0, chars_delivered=0, audio_seconds=0.0, bytes_sent=0, ttfb_ms=None,
            total_ms=0.0, outcome="cancelled", error_code="client_closed", created_at=time.time())
        task = asyncio.get_running_loop().create_task(self._record(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record(self, record: RequestRecord) -> None:
        from veena.platform.awaitables import await_maybe

        results = self.runtime.pm.hook.veena_request_finished(record=record, runtime=self.runtime)
        for result in await asyncio.gather(*[await_maybe(r) for r in results],
                                           return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("a request_finished hook failed: %r", result)


def _synthesis(scope: dict) -> bool:
    handler = scope.get("route_handler")
    return handler is not None and bool(handler.opt.get(SYNTHESIS_FLAG))


async def _closed(receive: Callable) -> None:
    """Returns when the connection reports its close (or the server's end of the request)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _text_of(body: bytes) -> str:
    """The text a synthesis body carries (``text``, or OpenAI's ``input``), else ""."""
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return ""
    if not isinstance(data, dict):
        return ""
    text = data.get("text", data.get("input"))
    return text if isinstance(text, str) else ""


def _request_id(scope: dict) -> str:
    state = scope.setdefault("state", {})
    if state.get("request_id") is None:
        given = next((v.decode("latin-1") for k, v in scope.get("headers") or []
                      if k.lower() == b"x-request-id"), None)
        state["request_id"] = new_request_id(given)
    return state["request_id"]


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for k, v in headers:
        if k.lower() == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> VeenaError:
    return VeenaError("body_too_large", f"the request body exceeds {limit} bytes", 413,
                      limit=limit)


def _too_deep(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except RecursionError:
        return True
    except msgspec.DecodeError:
        return False  # not JSON at all: the route answers that
    return False


def _replay(body: bytes, receive: Callable) -> Callable:
    """A ``receive`` that gives the body already read, then the connection's own events."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay
