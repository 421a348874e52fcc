"""``/with-timestamps`` routes: audio as base64 with ElevenLabs' character alignment
(estimated, see ``alignment``). They run the pipeline's admit/prepare/audio directly, as the
WebSocket plugin does, because they need the job's chunk timing."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.response import Stream

from veena.platform import lifecycle
from veena.platform.errors import VeenaError
from veena.platform.headers import response_headers
from veena.platform.job import Job
from veena.platform.streams import started
from veena.platform.logs import event, request_id_var
from veena.platform.pipeline import decode_body, new_request_id
from veena.platform.runtime import RequestInfo
from veena.plugins.elevenlabs.alignment import STARTS, Aligner
from veena.plugins.elevenlabs.schema import TextToSpeechBody


async def start(request: Request, voice_id: str, output_format: str | None,
                stream: bool) -> tuple[Job, AsyncIterator[bytes]]:
    """Admits and prepares the request, marked for chunk timing; returns the job and its audio."""
    pipeline = request.app.state.pipeline
    body = decode_body(await request.body(), TextToSpeechBody)
    req = body.to_generate(voice_id, output_format, stream=stream)
    state = request.scope.setdefault("state", {})
    rid = state.setdefault("request_id", new_request_id(request.headers.get("x-request-id")))
    request_id_var.set(rid)
    event("tts.request_received", route=request.url.path, text_chars=len(req.text),
          format=req.format, speaker=req.speaker, stream=stream)
    lifecycle.check_accepting(pipeline.runtime)
    principal = await pipeline.admit(RequestInfo(
        method=request.method, path=request.url.path, headers=dict(request.headers),
        client_host=request.client.host if request.client else None))
    job = pipeline.prepare(req, rid, principal)
    job.state[STARTS] = {}
    state.update(voice=job.speaker.name, format=job.output.codec.name)
    return job, pipeline.audio(job)


def _piece(audio: bytes, aligned: tuple[dict[str, Any], dict[str, Any]] | None) -> dict[str, Any]:
    original, normalized = aligned or (None, None)
    return {"audio_base64": base64.b64encode(audio).decode("ascii"), "alignment": original,
            "normalized_alignment": normalized}


async def whole(request: Request, job: Job, audio: AsyncIterator[bytes]) -> Response[Any]:
    """One JSON object: all the audio and the whole alignment."""
    async with aclosing(audio):
        data = b"".join([chunk async for chunk in audio])
    if job.deadline_exceeded:
        raise VeenaError("deadline_exceeded", "synthesis did not finish within this server's "
                         "request time limit; send shorter text or stream the response", 504)
    runtime = request.app.state.runtime
    return Response(_piece(data, Aligner(job).take()), media_type="application/json",
                    headers=response_headers(job, runtime, whole_body=True))


async def lines(job: Job, audio: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Newline-delimited JSON pieces as audio is made, each with the alignment of the chunks
    completed since the previous piece (null when none)."""
    aligner = Aligner(job)
    async with aclosing(audio):
        async for chunk in audio:
            if chunk:
                yield msgspec.json.encode(_piece(chunk, aligner.take())) + b"\n"
    rest = aligner.take()
    if rest is not None and (rest[0]["characters"] or rest[1]["characters"]):
        yield msgspec.json.encode(_piece(b"", rest)) + b"\n"


async def streamed(request: Request, job: Job, audio: AsyncIterator[bytes]) -> Response[Any]:
    """The lines as a stream; the first is made before the status goes out (clean errors)."""
    body = await started(lines(job, audio))
    return Stream(body, media_type="application/x-ndjson", status_code=200,
                  headers=response_headers(job, request.app.state.runtime, whole_body=False))
