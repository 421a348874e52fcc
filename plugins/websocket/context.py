"""One context of a socket: its text buffer, and the task that speaks its segments one
pipeline job at a time into ONE encoder, so the client gets one valid stream per context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veena.platform.alignment import Alignment
from veena.platform.audio import PCM
from veena.platform.encoding import encode_stream
from veena.platform.errors import VeenaError
from veena.platform.job import Job, OutputFormat, Principal
from veena.platform.logs import request_id_var
from veena.platform.pipeline import Pipeline
from veena.plugins.websocket.protocol import Start, request
from veena.plugins.websocket.segmenter import Segment, Segmenter

SendEvent = Callable[[dict[str, Any]], Awaitable[None]]
SendAudio = Callable[["Context", bytes], Awaitable[None]]


@dataclass
class Stats:
    """What ``done`` reports for a context."""

    samples: int = 0
    rate: int = 0
    bytes: int = 0
    request_ids: list[str] = field(default_factory=list)
    credits_remaining: str | None = None
    """The key's balance after the last segment, where the auth plugin reports one."""


class Context:
    """Text in (``feed``/``flush``/``end``), audio out through ``send_audio``.

    Each segment becomes one ``Pipeline`` job whose output is the voice's raw PCM; the PCM of
    every segment feeds one encoder of the session's format. ``cancel`` cancels the task,
    which closes the job's audio generator and so frees the engine's slot at once."""

    def __init__(self, cid: str, *, pipeline: Pipeline, start: Start, output: OutputFormat,
                 principal: Principal | None, new_request_id: Callable[[], str],
                 send_event: SendEvent, send_audio: SendAudio, segmenter: Segmenter,
                 max_wait_s: float, max_ahead_s: float) -> None:
        self.id = cid
        self.pipeline, self.start, self.output, self.principal = pipeline, start, output, principal
        self._new_rid, self._send_event, self._send_audio = new_request_id, send_event, send_audio
        self.segmenter = segmenter
        self.max_wait_s, self.max_ahead_s = max_wait_s, max_ahead_s
        self.sent_samples = 0
        """Samples of this context's audio whose bytes the socket has taken (set by the writer)."""
        self.queued_audio = 0
        """Audio frames of this context waiting for the socket."""
        self._progress = asyncio.Event()
        self.stats = Stats()
        self.ended = False
        self.queued_chars = 0
        self._queue: asyncio.Queue[Segment | None] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"ws-context-{cid}")

    @property
    def unspoken(self) -> int:
        """Characters received and not yet handed to synthesis."""
        return self.segmenter.pending + self.queued_chars

    def feed(self, text: str) -> None:
        self._enqueue(self.segmenter.feed(text))
        self._arm()

    def flush(self) -> None:
        self._enqueue([self.segmenter.flush()])

    def end(self) -> None:
        """Speaks what is left, then finishes the stream."""
        self.flush()
        self.ended = True
        self._disarm()
        self._queue.put_nowait(None)

    async def cancel(self) -> None:
        self.ended = True
        self._disarm()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    # --- the max-wait timer: text never sits unspoken longer than max_wait_s ---------------

    def _arm(self) -> None:
        if self.segmenter.pending == 0:
            self._disarm()
        elif self._timer is None and self.max_wait_s > 0:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self.ended:
            self._enqueue([self.segmenter.flush(whole_words=True)])
            self._arm()

    def _enqueue(self, segments: list[Segment | None]) -> None:
        for seg in segments:
            if seg is not None:
                self.queued_chars += len(seg.text)
                self._queue.put_nowait(seg)

    # --- synthesis ---------------------------------------------------------------------------

    async def _run(self) -> None:
        outcome, error = "completed", None
        out = self.output
        codec = out.codec
        encoded = encode_stream(
            self._pcm(), lambda: codec.open(out.sample_rate, streaming=True, bitrate=out.bitrate),
            inline=getattr(codec, "encode_inline", False))
        try:
            async with aclosing(encoded):
                async for data in encoded:
                    self.stats.bytes += len(data)
                    await self._send_audio(self, data)
        except asyncio.CancelledError:
            outcome = "cancelled"
        except VeenaError as exc:
            outcome, error = "failed", exc
        except Exception as exc:  # noqa: BLE001 - reported to the client, the socket lives on
            outcome, error = "failed", VeenaError("synthesis_failed", f"synthesis failed: {exc!r}", 500)
        if error is not None:
            await self._send_event({"type": "error", "context_id": self.id, "code": error.code,
                                    "message": error.message, **error.details})
        s = self.stats
        await self._send_event({
            "type": "done", "context_id": self.id, "outcome": outcome,
            "audio_seconds": round(s.samples / s.rate, 4) if s.rate else 0.0,
            "bytes": s.bytes, "request_ids": s.request_ids,
            **({"credits_remaining": int(s.credits_remaining)} if s.credits_remaining else {})})

    async def _pcm(self) -> AsyncIterator[PCM]:
        """The PCM of every segment in order, each from its own pipeline job."""
        while (seg := await self._queue.get()) is not None:
            self.queued_chars -= len(seg.text)
            job = self._prepare(seg)
            if job is None:
                continue
            rate = job.output.sample_rate
            if self.stats.rate and rate != self.stats.rate:
                raise VeenaError("synthesis_failed", "the voice changed its sample rate", 500)
            self.stats.rate = rate
            begin = self.stats.samples
            alignment = Alignment.attach(job) if self.start.timestamps else None
            async with aclosing(self.pipeline.audio(job)) as audio:
                async for data in audio:
                    samples = np.frombuffer(data, dtype="<i2")  # a read-only view, no copy
                    self.stats.samples += len(samples)
                    await self._keep_pace(rate)
                    yield PCM(samples, rate)
            remaining = job.extra_headers.get("X-Credits-Remaining")
            if remaining is not None:
                self.stats.credits_remaining = remaining
            if alignment is not None:
                await self._send_event(segment_alignment(
                    alignment, self.id, job.request_id, seg, begin / rate,
                    self.stats.samples / rate))

    def delivered(self, mark: int) -> None:
        """The writer sent a frame made when ``mark`` samples were synthesized."""
        self.sent_samples = max(self.sent_samples, mark)
        self._progress.set()

    async def _keep_pace(self, rate: int) -> None:
        """Backpressure: synthesis waits while it is more than ``max_ahead_s`` of audio ahead
        of what the socket took, unless nothing of this context is waiting to go out (then the
        difference is audio the encoder holds back, which only more input releases)."""
        limit = self.max_ahead_s * rate
        while self.stats.samples - self.sent_samples > limit and self.queued_audio:
            self._progress.clear()
            await self._progress.wait()

    def _prepare(self, seg: Segment) -> Job | None:
        rid = self._new_rid()
        request_id_var.set(rid)  # this task's own copy: the job's log lines carry its id
        try:
            job = self.pipeline.prepare(request(self.start, seg.text, format="pcm",
                                                sample_rate=None, bitrate=None),
                                        rid, self.principal)
        except VeenaError as exc:
            if exc.code == "empty_text":  # "..." or a lone tag: nothing to say, not an error
                return None
            raise
        self.stats.request_ids.append(rid)
        return job


def segment_alignment(alignment: Alignment, cid: str, request_id: str, seg: Segment,
                      start: float, end: float) -> dict[str, Any]:
    """The ``alignment`` event of a spoken segment: its span in the context's text and audio
    (measured), and its words (``veena_align``: exact for the embedded voice, else estimated)
    with offsets into the context's text and seconds of the context's audio."""
    words = []
    for w in alignment.words():
        words.append({**w, "text_start": seg.start + w["text_start"],
                      "text_end": seg.start + w["text_end"],
                      "start": round(min(start + w["start"], end), 4),
                      "end": round(min(start + w["end"], end), 4)})
    return {"type": "alignment", "context_id": cid, "request_id": request_id,
            "text_start": seg.start, "text_end": seg.end, "audio_start": round(start, 4),
            "audio_end": round(end, 4), "words": words}
