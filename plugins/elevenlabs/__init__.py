"""ElevenLabs-compatible text-to-speech routes: ``POST /v1/text-to-speech/{voice_id}`` (whole
body), ``.../stream`` (audio as it is made) and their ``/with-timestamps`` forms (base64 audio
with an estimated character alignment). Each maps its body into a ``GenerateRequest`` and
runs through the same implementation as ``/v1/tts/generate`` (auth, limits, records, metrics).
The ``xi-api-key`` header is presented to authentication as ``X-API-Key``. The WebSockets
``.../stream-input`` and ``.../multi-stream-input`` are the ``plugins/websocket`` session
behind a translating socket (``realtime``). See docs/elevenlabs.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.utils.empty import Empty
from litestar.utils.scope.state import ScopeState

from veena.platform.app import synthesis_response
from veena.platform.audio import PCM
from veena.platform.errors import VeenaError
from veena.platform.hookspecs import hookimpl
from veena.platform.job import Job
from veena.platform.limits import SYNTHESIS_OPT
from veena.platform.openapi import AUDIO_OPT
from veena.platform.pipeline import decode_body
from veena.platform.runtime import Runtime
from veena.plugins.elevenlabs import realtime, timestamps
from veena.plugins.elevenlabs.alignment import STARTS, mark_chunks
from veena.plugins.elevenlabs.schema import (DEFAULT_OUTPUT_FORMAT, OUTPUT_FORMATS, PARAMS,
                                             TextToSpeechBody)

NAME = "elevenlabs"
PATH = "/v1/text-to-speech/{voice_id:str}"
_DESCRIPTION = (f"As ElevenLabs documents it: `output_format` query ({DEFAULT_OUTPUT_FORMAT} by "
                f"default; one of {', '.join(OUTPUT_FORMATS)}), `voice_settings.speed`, "
                "`apply_text_normalization`, `seed`, `language_code`; `xi-api-key` or "
                "`Authorization: Bearer`. The voice id is a Veena voice name or alias.")


def present_xi_api_key(request: Request) -> None:
    """Adds ``X-API-Key`` from ``xi-api-key`` when the request carries no other key header, so the
    auth plugin checks it as any key (Litestar's cached headers are dropped to see it)."""
    names = {k.lower() for k, _ in request.scope["headers"]}
    if b"xi-api-key" not in names or names & {b"authorization", b"x-api-key"}:
        return
    value = next(v for k, v in request.scope["headers"] if k.lower() == b"xi-api-key")
    request.scope["headers"] = [*request.scope["headers"], (b"x-api-key", value)]
    ScopeState.from_scope(request.scope).headers = Empty


async def _speak(request: Request, voice_id: str, output_format: str | None,
                 stream: bool) -> Response[Any]:
    present_xi_api_key(request)
    try:
        body = decode_body(await request.body(), TextToSpeechBody)
        return await synthesis_response(
            request, body.to_generate(voice_id, output_format, stream=stream))
    except VeenaError as exc:
        exc.param = PARAMS.get(exc.param or "", exc.param)
        raise


@post(PATH, status_code=200, summary="ElevenLabs-compatible text to speech (whole body)",
      description=_DESCRIPTION, opt={**AUDIO_OPT, **SYNTHESIS_OPT})
async def convert(request: Request, voice_id: FromPath[str], data: JSONBody[TextToSpeechBody],
                  output_format: FromQuery[str | None] = None,
                  optimize_streaming_latency: FromQuery[int | None] = None,
                  enable_logging: FromQuery[bool | None] = None) -> Response[Any]:
    return await _speak(request, voice_id, output_format, stream=False)


@post(PATH + "/stream", status_code=200, summary="ElevenLabs-compatible text to speech "
      "(streamed as it is made)", description=_DESCRIPTION,
      opt={**AUDIO_OPT, **SYNTHESIS_OPT})
async def convert_stream(request: Request, voice_id: FromPath[str],
                         data: JSONBody[TextToSpeechBody],
                         output_format: FromQuery[str | None] = None,
                         optimize_streaming_latency: FromQuery[int | None] = None,
                         enable_logging: FromQuery[bool | None] = None) -> Response[Any]:
    return await _speak(request, voice_id, output_format, stream=True)


async def _timed(request: Request, voice_id: str, output_format: str | None,
                 stream: bool) -> Response[Any]:
    present_xi_api_key(request)
    try:
        job, audio = await timestamps.start(request, voice_id, output_format, stream)
    except VeenaError as exc:
        exc.param = PARAMS.get(exc.param or "", exc.param)
        raise
    if stream:
        return await timestamps.streamed(request, job, audio)
    return await timestamps.whole(request, job, audio)


@post(PATH + "/with-timestamps", status_code=200, summary="ElevenLabs-compatible text to speech "
      "with character timing (estimated)", description=_DESCRIPTION, opt=SYNTHESIS_OPT)
async def convert_with_timestamps(request: Request, voice_id: FromPath[str],
                                  data: JSONBody[TextToSpeechBody],
                                  output_format: FromQuery[str | None] = None,
                                  optimize_streaming_latency: FromQuery[int | None] = None,
                                  enable_logging: FromQuery[bool | None] = None) -> Response[Any]:
    return await _timed(request, voice_id, output_format, stream=False)


@post(PATH + "/stream/with-timestamps", status_code=200, summary="ElevenLabs-compatible "
      "streamed text to speech with character timing (estimated), as JSON lines",
      description=_DESCRIPTION, opt=SYNTHESIS_OPT)
async def stream_with_timestamps(request: Request, voice_id: FromPath[str],
                                 data: JSONBody[TextToSpeechBody],
                                 output_format: FromQuery[str | None] = None,
                                 optimize_streaming_latency: FromQuery[int | None] = None,
                                 enable_logging: FromQuery[bool | None] = None) -> Response[Any]:
    return await _timed(request, voice_id, output_format, stream=True)


@hookimpl
def veena_register_routes(runtime: Runtime):
    return [convert, convert_stream, convert_with_timestamps, stream_with_timestamps,
            *realtime.ROUTES]


@hookimpl(wrapper=True)
def veena_process_audio(stream: AsyncIterator[PCM], job: Job, runtime: Runtime):
    """Notes chunk start times for timestamp requests and for the segments of an ElevenLabs
    socket; other requests pass untouched."""
    inner = yield
    if STARTS in job.state:
        return mark_chunks(inner, job)
    sink = realtime.recording(job)
    return realtime.record(inner, job, sink) if sink is not None else inner
