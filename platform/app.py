"""The Litestar application: routes, error mapping and lifecycle, built by ``create_app``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.params import JSONBody
from litestar.response import Stream

from veena.platform import lifecycle, openapi, timestamps
from veena.platform.alignment import Alignment
from veena.platform.awaitables import await_all
from veena.platform.config import VeenaConfig, load_config
from veena.platform.errors import VeenaError, invalid_choice
from veena.platform.limits import SYNTHESIS_OPT, RequestGuard
from veena.platform.logs import event, ms, request_id_var
from veena.platform.headers import error_headers, response_headers
from veena.platform.job import Job
from veena.platform.pipeline import Pipeline, decode_body, field_of, new_request_id
from veena.platform.speech_api import follow_instructions, sse_events
from veena.platform.plugins import build_runtime, plugin_routes, route_keys
from veena.platform.runtime import Phase, RequestInfo, Runtime
from veena.platform.telemetry import TelemetryMiddleware
from veena.platform.streams import started
from veena.platform.schemas import (FormatInfo, GenerateRequest, Health, ModelInfo, ModelList,
                                    SpeechRequest)

log = logging.getLogger("veena.app")


def _pipeline(request: Request) -> Pipeline:
    return request.app.state.pipeline


def _request_id(request: Request) -> str:
    rid = request.scope.get("state", {}).get("request_id")
    if rid is None:
        rid = new_request_id(request.headers.get("x-request-id"))
        request.scope.setdefault("state", {})["request_id"] = rid
    return rid


async def synthesis_response(request: Request, data: GenerateRequest, *,
                             headers: dict[str, str] | None = None,
                             sse: bool = False) -> Response[Any]:
    """Runs one synthesis request end to end (the one streaming implementation every HTTP
    interface uses); ``headers`` go on the response, ``sse`` streams OpenAI SSE events."""
    pipeline = _pipeline(request)
    rid = _request_id(request)
    request_id_var.set(rid)
    event("tts.request_received", route=request.url.path, text_chars=len(data.text),
          format=data.format, speaker=data.speaker, stream=data.stream)
    lifecycle.check_accepting(pipeline.runtime)
    t = time.perf_counter()
    principal = await pipeline.admit(RequestInfo(
        method=request.method, path=request.url.path, headers=dict(request.headers),
        client_host=request.client.host if request.client else None))
    event("tts.auth_validated", key_id=principal.key_id if principal else None, ms=ms(t))
    job = pipeline.prepare(data, rid, principal)
    job.extra_headers.update(headers or {})
    codec = job.output.codec
    request.scope["state"].update(voice=job.speaker.name, format=codec.name)
    media_type = codec.media_type
    alignment = Alignment.attach(job) if data.timestamps else None
    audio = pipeline.audio(job)
    if alignment is not None:
        return await _with_timestamps(audio, job, alignment, pipeline)
    if sse:
        job.stream, media_type = True, "text/event-stream"
        audio = sse_events(audio, job)
    if not job.stream:
        async with aclosing(audio):
            body = b"".join([chunk async for chunk in audio])
        if job.deadline_exceeded:
            raise VeenaError("deadline_exceeded", "synthesis did not finish within this server's "
                             "request time limit; send shorter text or stream the response", 504)
        return Response(body, media_type=codec.media_type, status_code=200,
                        headers=response_headers(job, pipeline.runtime, whole_body=True))
    return Stream(await started(audio), media_type=media_type, status_code=200,
                  headers=response_headers(job, pipeline.runtime, whole_body=False))


async def _with_timestamps(audio: AsyncIterator[bytes], job: Job, alignment: Alignment,
                           pipeline: Pipeline) -> Response[Any]:
    """``timestamps: true``: SSE of audio and alignment events, or one JSON body."""
    if not job.stream:
        body = await timestamps.whole(audio, job, alignment)
        if getattr(job, "deadline_exceeded", False) or job.state.get("deadline_exceeded"):
            raise VeenaError("deadline_exceeded", "synthesis did not finish within this server's "
                             "request time limit; send shorter text or stream the response", 504)
        return Response(body, media_type="application/json", status_code=200,
                        headers=response_headers(job, pipeline.runtime, whole_body=True))
    return Stream(await started(timestamps.sse(audio, job, alignment)),
                  media_type=timestamps.MEDIA_TYPE, status_code=200,
                  headers=response_headers(job, pipeline.runtime, whole_body=False))


@post("/v1/tts/generate", status_code=200, summary="Synthesize speech (streaming or whole body)",
      opt=SYNTHESIS_OPT)
async def generate(request: Request, data: JSONBody[GenerateRequest]) -> Response[Any]:
    # Decoded again, strictly: Litestar's own decoding turns "44100" into 44100.
    return await synthesis_response(request, decode_body(await request.body(), GenerateRequest))


OPENAI_PARAMS = {"text": "input", "speaker": "voice", "format": "response_format"}
"""Veena field names -> the OpenAI request's, for the ``param`` of an error."""


@post("/v1/audio/speech", status_code=200, summary="OpenAI-compatible speech endpoint",
      opt=SYNTHESIS_OPT,
      description="As OpenAI documents it: mp3 by default, `pcm` at 24 kHz, OpenAI voice names "
                  "through voice aliases, `speed`, `instructions` (what was applied is in "
                  "`X-Instructions-Applied`) and `stream_format: sse`.")
async def openai_speech(request: Request, data: JSONBody[SpeechRequest]) -> Response[Any]:
    data = decode_body(await request.body(), SpeechRequest)
    runtime = _pipeline(request).runtime
    try:
        if data.stream_format not in (None, "audio", "sse"):
            raise invalid_choice("unsupported_stream_format", "stream_format",
                                 data.stream_format, ["audio", "sse"])
        synthesizer = runtime.synthesizers.get(runtime.config.stages.synthesizer)
        req, applied = follow_instructions(data.instructions, data.to_generate(), synthesizer)
        headers = {} if data.instructions is None else {"X-Instructions-Applied": applied}
        return await synthesis_response(request, req, headers=headers,
                                        sse=data.stream_format == "sse")
    except VeenaError as exc:
        exc.param = OPENAI_PARAMS.get(exc.param or "", exc.param)
        raise


@get("/v1/models", summary="Models, in OpenAI's list shape")
async def models(request: Request) -> ModelList:
    rt: Runtime = _pipeline(request).runtime
    created = int(rt.created)
    names = [rt.config.server.model_version, *rt.synthesizers.names()]
    return ModelList([ModelInfo(n, created, "veena") for n in dict.fromkeys(names)])


@get("/v1/tts/health", summary="Readiness and what is loaded",
     description="200 with status `ok` once the server takes requests; 503 with status "
                 "`starting`, `warming` or `draining` otherwise.")
async def health(request: Request) -> Response[Health]:
    rt: Runtime = _pipeline(request).runtime
    ready = rt.phase is Phase.READY
    body = Health(status="ok" if ready else rt.phase.value,
                  model_version=rt.config.server.model_version,
                  synthesizer=rt.config.stages.synthesizer,
                  synthesizers=rt.synthesizers.names(), formats=rt.codecs.names(),
                  voices=len(rt.speakers), active_streams=_pipeline(request).active_streams)
    return Response(body, status_code=200 if ready else 503,
                    headers={} if ready else {"Cache-Control": "no-cache"})


@get("/v1/formats", summary="Output formats, their aliases and sample rates")
async def formats(request: Request) -> list[FormatInfo]:
    rt = _pipeline(request).runtime
    return [FormatInfo(c.name, c.media_type, tuple(c.aliases), tuple(c.sample_rates),
                       c.default_sample_rate, getattr(c, "default_rate_floor", 0))
            for c in sorted(rt.codecs, key=lambda c: c.name)]


@get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response[bytes]:
    body = _pipeline(request).runtime.telemetry.prometheus()
    return Response(body, media_type="text/plain; version=0.0.4")  # Litestar adds the charset


def _error_response(request: Request, error: VeenaError) -> Response[Any]:
    rid = _request_id(request)
    event("tts.error", request_id=rid, code=error.code, status=error.status)
    return Response(error.body(rid), status_code=error.status,
                    headers={**error_headers(rid), **error.headers})


def _on_veena_error(request: Request, exc: VeenaError) -> Response[Any]:
    return _error_response(request, exc)


def _on_validation(request: Request, exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    message = "; ".join(str(p.get("message", p)) if isinstance(p, dict) else str(p)
                        for p in problems) or str(exc.detail)
    keys = [p.get("key") for p in problems if isinstance(p, dict) and p.get("key") != "data"]
    param = field_of(message) or (str(keys[0]) if keys and keys[0] else None)
    if request.url.path == "/v1/audio/speech":
        param = OPENAI_PARAMS.get(param or "", param)
    return _error_response(request, VeenaError("invalid_request", message, 400, param=param))


def _on_http(request: Request, exc: HTTPException) -> Response[Any]:
    code = {400: "invalid_request", 404: "not_found",
            405: "method_not_allowed"}.get(exc.status_code, "http_error")
    # Litestar's own headers stay (a 405's ``Allow``, RFC 9110).
    return _error_response(request, VeenaError(code, str(exc.detail), exc.status_code,
                                               headers=dict(exc.headers or {})))


def _on_crash(request: Request, exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return _error_response(request, VeenaError("internal_error", "internal server error", 500))


def create_app(config: VeenaConfig | None = None, *,
               plugins: Iterable[tuple[str, object]] = (),
               paths: Callable[[str], bool] | None = None) -> Litestar:
    """Builds the runtime (plugins, registries) and the Litestar app around it.

    :param config: the configuration (default: ``$VEENA_CONFIG`` or built-in defaults).
    :param plugins: extra (name, plugin) pairs registered next to the entry points.
    :param paths: serves only the routes whose path it accepts (a deployment's control plane
        leaves synthesis out); default: every route.
    """
    runtime = build_runtime(config or load_config(), extra=plugins)
    pipeline = Pipeline(runtime)
    handlers = plugin_routes(runtime, core=[generate, openai_speech, models, health, formats,
                                             metrics])
    if paths is not None:
        handlers = [h for h in handlers if any(paths(path) for path, _ in route_keys(h))]
    routes = frozenset(path for h in handlers for path, _ in route_keys(h))

    async def startup(app: Litestar) -> None:
        await lifecycle.start(runtime)  # nothing to do when a deployment started it already
        openapi.describe(app, runtime)  # the schema's choices exist once plugins are loaded
        lifecycle.mark_ready(runtime)

    async def shutdown(app: Litestar) -> None:
        await pipeline.drain()
        await await_all(reversed(runtime.pm.hook.veena_shutdown(runtime=runtime)))
        runtime.telemetry.shutdown()

    app = Litestar(
        route_handlers=handlers,
        middleware=[lambda app: TelemetryMiddleware(app, runtime.telemetry, routes),
                    lambda app: RequestGuard(app, runtime)],
        on_startup=[startup], on_shutdown=[shutdown],
        exception_handlers={VeenaError: _on_veena_error, ValidationException: _on_validation,
                            HTTPException: _on_http, Exception: _on_crash},
        openapi_config=OpenAPIConfig(title="Veena TTS", version="0.1.0", path="/schema"),
        debug=False,
    )
    app.state.pipeline = pipeline
    app.state.runtime = runtime
    runtime.telemetry.gauge("veena_ready", "1 while the server takes requests, else 0",
                            lambda: 1.0 if runtime.phase is Phase.READY else 0.0)
    return app
