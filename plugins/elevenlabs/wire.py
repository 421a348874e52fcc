"""A WebSocket that speaks ElevenLabs' protocol on the outside and Veena's on the inside, so the
``plugins/websocket`` session (contexts, segmenter, backpressure, limits, auth, records) serves
ElevenLabs' ``stream-input`` and ``multi-stream-input`` unchanged: client messages are
translated into Veena's, Veena's events into ElevenLabs' server messages."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar.connection import WebSocket

from veena.platform.errors import VeenaError
from veena.plugins.elevenlabs import messages
from veena.plugins.websocket.protocol import DEFAULT_CONTEXT

POLICY_VIOLATION = 1008
"""ElevenLabs closes with 1008 on every refused request (bad input, key, quota, timeout)."""
Aligned = tuple[dict[str, Any], dict[str, Any]]
"""(alignment, normalized_alignment) of one segment, ``alignment.Aligner``'s shape, seconds."""
_PARAM_OF_CODE = {"unknown_speaker": "voice_id", "invalid_speed": "voice_settings.speed",
                  "unsupported_language": "language_code", "unsupported_format": "output_format",
                  "unsupported_sample_rate": "output_format"}
"""Veena's socket sends no ``param``; these codes name the ElevenLabs field at fault."""


@dataclass
class Utterance:
    """One ElevenLabs context as Veena's session knows it (a context id can be used again once
    closed: the new utterance gets its own Veena id)."""

    el_id: str
    veena_id: str
    text: str = ""
    """Everything the client sent to it, so segment offsets map back to characters."""
    aligned_to: int = 0
    flushed: bool = True
    """No text since the last flush (``close_context`` then lets it finish)."""
    closing: bool = False
    segments: int = 0
    held: list[bytes] = field(default_factory=list)
    """With ``sync_alignment``: audio kept until its segment's alignment is known."""
    after: Utterance | None = None
    """The earlier utterance of the same id, still finishing: this one's messages wait for its
    ``isFinal`` (in ``backlog``), so the client gets the two one after the other."""
    backlog: list[dict[str, Any]] = field(default_factory=list)
    next: Utterance | None = None
    """The later utterance of the same id waiting for this one."""
    finished: bool = False


class ElevenLabsSocket:
    """The duck-typed ``WebSocket`` handed to ``plugins.websocket.session.Session``."""

    def __init__(self, socket: WebSocket, voice_id: str, *, multi: bool,
                 query: messages.Query, records: dict[str, Aligned],
                 taken_request_ids: set[str] | dict[str, Any]) -> None:
        self.socket, self.voice_id, self.multi, self.query = socket, voice_id, multi, query
        self.records = records
        headers = {k.lower(): v for k, v in socket.headers.items()}
        if "xi-api-key" in headers and not {"authorization", "x-api-key"} & headers.keys():
            headers["x-api-key"] = headers["xi-api-key"]
        if headers.get("x-request-id") in taken_request_ids:
            del headers["x-request-id"]
        self.headers = headers
        self.client, self.url = socket.client, socket.url
        self.fatal: VeenaError | None = None
        self._pending: deque[dict[str, Any]] = deque()
        self._started = False
        self._live: dict[str, Utterance] = {}
        self._by_veena: dict[str, Utterance] = {}
        self._uses = 0
        self._last_error = ""
        self._lock = asyncio.Lock()
        self._active = time.monotonic()

    # --- the socket as Session uses it ------------------------------------------------------

    async def accept(self) -> None:
        await self.socket.accept()

    async def receive(self) -> dict[str, Any]:
        """The next Veena message (one ElevenLabs message may stand for several or none)."""
        while not self._pending:
            try:
                msg = await asyncio.wait_for(self.socket.receive(), self._idle_left())
            except TimeoutError:
                if self._idle_left() > 0:
                    continue  # audio went out meanwhile: not inactive
                self.fatal = self._timeout()
                return {"type": "websocket.disconnect", "code": POLICY_VIOLATION}
            self._active = time.monotonic()
            if msg["type"] == "websocket.disconnect":
                return msg
            raw = msg.get("text")
            if raw is None:
                raw = msg.get("bytes") or b""
            try:
                self._translate(messages.parse(raw))
            except VeenaError as exc:  # ElevenLabs ends the socket on a message it cannot read
                self.fatal = exc
                return {"type": "websocket.disconnect", "code": POLICY_VIOLATION}
        return {"type": "websocket.receive", "text": msgspec.json.encode(
            self._pending.popleft()).decode()}

    async def send_text(self, data: str | bytes, encoding: str = "utf-8") -> None:
        if self.fatal is None:
            for out in self._outgoing(msgspec.json.decode(data)):
                await self._send(out)
                if out.get("audio"):
                    self._active = time.monotonic()

    def _idle_left(self) -> float:
        """Seconds until ElevenLabs' ``inactivity_timeout``: counted from the last client
        message or, while audio is still going out, from the last audio sent."""
        return self._active + self.query.inactivity_s - time.monotonic()

    def _timeout(self) -> VeenaError:
        return VeenaError("input_timeout_exceeded", "no text arrived within the "
                          f"inactivity_timeout of {self.query.inactivity_s:g} seconds; send "
                          "text in time, or {\"text\": \"\"} at the end", 408)

    async def send_bytes(self, data: bytes) -> None:  # binary is off: never called
        await self.socket.send_bytes(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Veena's close codes as ElevenLabs': 1008 with the error's message for a refusal."""
        if code == 4408:  # the session's own idle limit (a backstop: see ``receive``)
            err = self._timeout()
            await self._send(self._error(err.code, err.message, {}))
            code, reason = POLICY_VIOLATION, err.message
        elif 4000 <= code < 5000:
            code, reason = POLICY_VIOLATION, self._last_error or reason
        await self.socket.close(code, _cut(reason or ""))

    async def refuse(self, exc: VeenaError) -> None:
        """Accepts, sends ``exc`` as ElevenLabs' error message and closes 1008."""
        await self.socket.accept()
        await self._refuse(exc)

    async def finish(self) -> None:
        """After the session: a client message that could not be read ends the socket (1008)."""
        if self.fatal is not None:
            try:
                await self._refuse(self.fatal)
            except Exception:  # noqa: BLE001 - the peer may be gone already
                pass

    async def _refuse(self, exc: VeenaError) -> None:
        details = {**exc.details, **({"param": exc.param} if exc.param else {})}
        await self._send(self._error(exc.code, exc.message, details))
        await self.socket.close(POLICY_VIOLATION, _cut(exc.message))

    async def _send(self, body: dict[str, Any]) -> None:
        async with self._lock:
            await self.socket.send_text(msgspec.json.encode(body).decode())

    # --- client -> Veena --------------------------------------------------------------------

    def _translate(self, msg: messages.ClientMessage) -> None:
        if not self._started:
            self._started = True
            start = self.query.start(self.voice_id, msg)
            self._pending.append(msgspec.to_builtins(start))
            if msg.text is None and not self.multi:
                msg.text = " "  # the one context exists from the start, as isFinal needs it
        cid = (msg.context_id or DEFAULT_CONTEXT) if self.multi else DEFAULT_CONTEXT
        if msg.close_context and self.multi:
            self._close(cid)
            return
        for out in messages.veena(msg, multi=self.multi, auto_mode=self.query.auto_mode):
            if out["type"] == "end" and "context_id" not in out:
                for utt in self._live.values():
                    utt.closing = True
                self._pending.append(out)
                continue
            utt = self._utterance(cid)
            out["context_id"] = utt.veena_id
            if out["type"] == "text":
                utt.text += out["text"]
                if out["text"].strip():
                    utt.flushed = False
            else:
                utt.flushed = True
            self._pending.append(out)
        live = self._live.get(cid)
        if self.multi and msg.text == "" and not msg.flush and live and not live.closing:
            self._pending.append({"type": "text", "text": "", "context_id":
                                  live.veena_id})  # keeps the context alive

    def _utterance(self, cid: str) -> Utterance:
        utt = self._live.get(cid)
        if utt is None or utt.closing:
            veena_id = cid
            if cid in self._by_veena:
                self._uses += 1
                veena_id = f"{cid[:56]}~{self._uses}"
            earlier = utt if utt is not None and not utt.finished else None
            utt = self._live[cid] = self._by_veena[veena_id] = Utterance(cid, veena_id,
                                                                        after=earlier)
            if earlier is not None:
                earlier.next = utt
        return utt

    def _close(self, cid: str) -> None:
        """``close_context``: text already flushed is still spoken (ElevenLabs: "it will continue
        flushing"); a context holding unflushed text stops at once, as for a barge-in."""
        utt = self._live.get(cid)
        if utt is None or utt.closing:
            return
        utt.closing = True
        kind = "end" if utt.flushed else "cancel"
        self._pending.append({"type": kind, "context_id": utt.veena_id})

    # --- Veena -> client --------------------------------------------------------------------

    def _outgoing(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        """ElevenLabs' messages for one Veena event, in the order the client is to get them."""
        utt = self._by_veena.get(ev.get("context_id") or "")
        bodies = self._bodies(utt, ev)
        if utt is None:
            return bodies
        if ev.get("type") == "done":
            utt.finished = True
        if utt.after is not None:
            utt.backlog.extend(bodies)
            return []
        return bodies + (self._release(utt) if utt.finished else [])

    def _release(self, done: Utterance) -> list[dict[str, Any]]:
        """The messages that waited for ``done``'s ``isFinal`` (and, in turn, their own)."""
        utt, done.next = done.next, None
        if utt is None:
            return []
        utt.after, out, utt.backlog = None, utt.backlog, []
        return out + self._release(utt) if utt.finished else out

    def _bodies(self, utt: Utterance | None, ev: dict[str, Any]) -> list[dict[str, Any]]:
        kind = ev.get("type")
        if kind == "audio" and utt is not None:
            if self.query.sync_alignment:
                utt.held.append(base64.b64decode(ev["audio"]))
                return []
            return [self._audio(utt, ev["audio"], None)]
        if kind == "alignment" and utt is not None:
            aligned = self._align(utt, ev)
            audio = base64.b64encode(b"".join(utt.held)).decode()
            utt.held.clear()
            return [self._audio(utt, audio, aligned)]
        if kind == "done" and utt is not None:
            out = [self._audio(utt, base64.b64encode(b"".join(utt.held)).decode(), None)] \
                if utt.held else []
            del self._by_veena[utt.veena_id]
            if self._live.get(utt.el_id) is utt:
                del self._live[utt.el_id]
            final: dict[str, Any] = {"isFinal": True}
            if self.multi:
                final["contextId"] = utt.el_id
            else:
                final.update(audio=None, normalizedAlignment=None, alignment=None)
            return [*out, final]
        if kind == "error":
            details = {k: v for k, v in ev.items()
                       if k not in ("type", "code", "message", "context_id")}
            if ev.get("code") in _PARAM_OF_CODE:
                details["param"] = _PARAM_OF_CODE[ev["code"]]
            body = self._error(ev.get("code", "error"), ev.get("message", ""), details)
            if utt is not None and self.multi:
                body["contextId"] = utt.el_id
            self._last_error = body["message"]
            return [body]
        return []  # ready; events of a context already gone

    def _audio(self, utt: Utterance, audio: str,
               aligned: Aligned | None) -> dict[str, Any]:
        body: dict[str, Any] = {"audio": audio, "isFinal": None,
                                "normalizedAlignment": _ms(aligned[1]) if aligned else None,
                                "alignment": _ms(aligned[0]) if aligned else None}
        if self.multi:
            body["contextId"] = utt.el_id
        return body

    def _align(self, utt: Utterance, ev: dict[str, Any]) -> Aligned:
        """The segment's characters timed from its own start (ElevenLabs: "relative to the
        returned chunk"); the text between segments (spaces, unspeakable marks) is prepended
        with no duration, so every message's characters joined give the client's text."""
        start, end = int(ev["text_start"]), int(ev["text_end"])
        begin = float(ev["audio_start"])
        span = max(0.0, float(ev["audio_end"]) - begin)
        aligned = self.records.pop(ev.get("request_id") or "", None)
        if aligned is None:  # no record (another plugin's synthesis path): spread evenly
            piece = _spread(utt.text[start:end], span)
            aligned = (piece, piece)
        original, normalized = aligned
        if ev.get("words"):  # the socket's word times (exact for eSpeak NG) beat an even spread
            original = _from_words(utt.text, start, end, begin, span, ev["words"])
        gap = utt.text[utt.aligned_to:start]
        original = _join(_spread(gap, 0.0), original)
        if utt.segments:
            normalized = _join(_spread(" ", 0.0), normalized)
        utt.aligned_to, utt.segments = end, utt.segments + 1
        return original, normalized

    def _error(self, code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
        return {"message": message, "error": code, "code": POLICY_VIOLATION, **details}


def _spread(text: str, seconds: float) -> dict[str, Any]:
    step = seconds / max(len(text), 1)
    return {"characters": list(text),
            "character_start_times_seconds": [i * step for i in range(len(text))],
            "character_end_times_seconds": [(i + 1) * step for i in range(len(text))]}


def _from_words(text: str, start: int, end: int, begin: float, span: float,
                words: list[dict[str, Any]]) -> dict[str, Any]:
    """Characters ``text[start:end]`` timed from the segment's words (offsets into ``text``,
    seconds of the context's audio, which starts the segment at ``begin``): a word's span is
    shared evenly by its characters; those between words take no time, and the last one
    lasts until the segment's audio ends (its trailing silence)."""
    n = len(text[start:end])
    starts: list[float | None] = [None] * n
    ends: list[float | None] = [None] * n
    for w in words:
        a, b = max(0, int(w["text_start"]) - start), min(n, int(w["text_end"]) - start)
        if b <= a:
            continue
        t0 = min(max(0.0, float(w["start"]) - begin), span)
        t1 = min(max(t0, float(w["end"]) - begin), span)
        step = (t1 - t0) / (b - a)
        for i in range(a, b):
            starts[i], ends[i] = t0 + (i - a) * step, t0 + (i - a + 1) * step
    out_s, out_e, last = [], [], 0.0
    for s, e in zip(starts, ends):
        s = last if s is None else max(s, last)
        e = s if e is None else max(e, s)
        out_s.append(s)
        out_e.append(e)
        last = e
    if out_e:  # the last character lasts to the segment's end (clients add pieces' spans up)
        out_e[-1] = max(out_e[-1], span)
    return {"characters": list(text[start:end]), "character_start_times_seconds": out_s,
            "character_end_times_seconds": out_e}


def _join(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: list(a[k]) + list(b[k]) for k in a}


def _ms(piece: dict[str, Any]) -> dict[str, Any]:
    """``alignment.Aligner``'s seconds as ElevenLabs' socket sends them: whole milliseconds."""
    starts = [round(s * 1000) for s in piece["character_start_times_seconds"]]
    ends = [round(e * 1000) for e in piece["character_end_times_seconds"]]
    return {"chars": piece["characters"], "charStartTimesMs": starts,
            "charDurationsMs": [max(0, e - s) for s, e in zip(starts, ends)]}


def _cut(reason: str, limit: int = 123) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    data = reason.encode()
    return reason if len(data) <= limit else data[:limit].decode(errors="ignore")
