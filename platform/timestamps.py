"""``POST /v1/tts/generate`` with ``timestamps: true``: the audio with its word times, as
server-sent events while synthesis runs (``stream: true``) or as one JSON body. The alignment
pieces are those of the WebSocket (``veena.platform.alignment``)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec

from veena.platform.alignment import Alignment
from veena.platform.errors import VeenaError
from veena.platform.job import Job

MEDIA_TYPE = "text/event-stream"


def _codec_name(job: Job) -> str:
    codec = job.output.codec
    return codec if isinstance(codec, str) else codec.name


def _done(job: Job, sent: int, alignment: Alignment) -> dict[str, Any]:
    return {"request_id": job.request_id, "format": _codec_name(job),
            "sample_rate": job.output.sample_rate, "audio_seconds": round(job.audio_seconds, 4),
            "bytes": sent, "word_count": len(alignment.words())}


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return (b"event: " + kind.encode() + b"\ndata: "
            + msgspec.json.encode({"type": kind, **data}) + b"\n\n")


async def sse(audio: AsyncIterator[bytes], job: Job, alignment: Alignment) -> AsyncIterator[bytes]:
    """``audio`` events (base64 of the encoded bytes) as they are made, an ``alignment`` event
    per chunk as soon as its words are known, then ``done``; a failure after the first event is
    an ``error`` event (the status line has gone out)."""
    sent = 0
    try:
        async with aclosing(audio):
            async for data in audio:
                for piece in alignment.take():
                    yield _event("alignment", {"request_id": job.request_id, **piece})
                if data:
                    sent += len(data)
                    yield _event("audio", {"audio": base64.b64encode(data).decode("ascii"),
                                           "bytes": len(data)})
    except VeenaError as exc:
        yield _event("error", {"code": exc.code, "message": exc.message,
                               "request_id": job.request_id, **exc.details})
        return
    for piece in alignment.take():
        yield _event("alignment", {"request_id": job.request_id, **piece})
    yield _event("done", _done(job, sent, alignment))


async def whole(audio: AsyncIterator[bytes], job: Job, alignment: Alignment) -> dict[str, Any]:
    """The whole audio (base64) with every word and the per-chunk pieces."""
    async with aclosing(audio):
        body = b"".join([data async for data in audio])
    return {**_done(job, len(body), alignment), "audio": base64.b64encode(body).decode("ascii"),
            "words": alignment.words(), "alignment": alignment.pieces}
