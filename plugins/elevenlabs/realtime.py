"""ElevenLabs' WebSocket routes, ``WS /v1/text-to-speech/{voice_id}/stream-input`` and
``.../multi-stream-input``: the ``plugins/websocket`` session behind a translating socket
(``wire``, which also keeps ElevenLabs' ``inactivity_timeout``). Each segment's character
alignment comes from ``alignment.Aligner`` on the segment's job, noted by the plugin's
``veena_process_audio`` wrapper while the job runs (``record``). See docs/elevenlabs.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import msgspec
from litestar import websocket
from litestar.connection import WebSocket

from veena.platform.audio import PCM
from veena.platform.errors import VeenaError
from veena.platform.job import Job
from veena.plugins.elevenlabs import messages
from veena.plugins.elevenlabs.alignment import STARTS, Aligner, mark_chunks
from veena.plugins.elevenlabs.wire import Aligned, ElevenLabsSocket
from veena.plugins.websocket import NAME as WEBSOCKET, Config
from veena.plugins.websocket.session import Session

PATH = "/v1/text-to-speech/{voice_id:str}"
_SESSIONS: dict[str, dict[str, Aligned]] = {}
"""Open ElevenLabs sockets by their session's request id -> the alignment of each finished
segment job, by the job's request id (``{session}-{n}``); emptied as the socket uses them and
dropped when it closes."""


@websocket(PATH + "/stream-input")
async def stream_input(socket: WebSocket, voice_id: str) -> None:
    """ElevenLabs' single-utterance input streaming (see docs/elevenlabs.md)."""
    await _serve(socket, voice_id, multi=False)


@websocket(PATH + "/multi-stream-input")
async def multi_stream_input(socket: WebSocket, voice_id: str) -> None:
    """ElevenLabs' multi-context input streaming (see docs/elevenlabs.md)."""
    await _serve(socket, voice_id, multi=True)


ROUTES = [stream_input, multi_stream_input]


async def _serve(socket: WebSocket, voice_id: str, *, multi: bool) -> None:
    pipeline = socket.app.state.pipeline
    cfg: Config = pipeline.runtime.plugin_config(WEBSOCKET) or Config()
    records: dict[str, Aligned] = {}
    try:
        query = messages.query({k: socket.query_params.get(k) for k in socket.query_params})
    except VeenaError as exc:
        await ElevenLabsSocket(socket, voice_id, multi=multi, query=messages.Query(),
                               records=records, taken_request_ids=_SESSIONS).refuse(exc)
        return
    wire = ElevenLabsSocket(socket, voice_id, multi=multi, query=query, records=records,
                            taken_request_ids=_SESSIONS)
    idle = max(cfg.idle_timeout_s, query.inactivity_s + 5)  # the wire's inactivity comes first
    session = Session(wire, pipeline, msgspec.structs.replace(  # type: ignore[arg-type]
        cfg, idle_timeout_s=idle))
    _SESSIONS[session.request_id] = records
    try:
        await session.serve()
    finally:
        del _SESSIONS[session.request_id]
    await wire.finish()


def recording(job: Job) -> dict[str, Aligned] | None:
    """Where a segment job of an ElevenLabs socket leaves its alignment; None for other jobs."""
    return _SESSIONS.get(job.request_id.rpartition("-")[0]) if _SESSIONS else None


async def record(stream: AsyncIterator[PCM], job: Job,
                 sink: dict[str, Aligned]) -> AsyncIterator[PCM]:
    """Passes the audio on, noting chunk starts; once it has all gone, leaves the job's
    (alignment, normalized_alignment) in ``sink``."""
    job.state[STARTS] = {}
    async with aclosing(mark_chunks(stream, job)) as blocks:
        async for block in blocks:
            yield block
    aligned = Aligner(job).take()
    if aligned is not None:
        sink[job.request_id] = aligned
