"""The OpenAPI schema at ``/schema``, made to describe what the server really sends.

Litestar generates the schema from the route handlers; it cannot know the error body
(``veena.platform.errors``), the audio media types or the choices (codecs, voices, rates), which
exist only once the plugins are loaded. ``describe`` patches the generated schema once, at
start-up, from the runtime:

- request bodies are msgspec's own JSON Schema of ``GenerateRequest``/``SpeechRequest`` (the
  decoder that validates them), plus enums of the loaded formats, voices, languages and rates,
  ``maxLength`` = ``server.max_text_chars`` and the speed range;
- every 4xx/5xx is ``{"error": {code, message, type, param, request_id, ...}}`` (``ErrorBody``),
  and each operation lists the statuses it can answer (401/402/403/429 from the auth and rate
  plugins, 413/431 from the request guard, 503 while not ready, 504 past the deadline);
- the synthesis routes' 200 lists each codec's media type (and ``text/event-stream`` for SSE).
"""

from __future__ import annotations

import re
from http import HTTPStatus
from collections.abc import Collection
from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import ResponseSpec
from litestar.routes import HTTPRoute

from veena.platform.errors import OPENAI_TYPES
from veena.platform.runtime import Runtime
from veena.platform.schemas import MAX_SPEED, MIN_SPEED, GenerateRequest, Health, SpeechRequest

REF = "#/components/schemas/{name}"
ERROR_REF = {"$ref": REF.format(name="ErrorBody")}
SYNTHESIS = {"/v1/tts/generate": "post", "/v1/audio/speech": "post"}
SSE_PATH = "/v1/audio/speech"
TIMESTAMPS_PATH = "/v1/tts/generate"
AUDIO_OPT = {"veena_audio": True}
"""``opt=`` for a route decorator whose 200 is synthesized audio (a plugin's route through the
synthesis path): its schema gets each codec's media type and the synthesis statuses."""


class ValidRange(msgspec.Struct):
    """The valid range, for a number out of range."""

    min: float
    max: float


class ErrorDetail(msgspec.Struct, kw_only=True):
    """One error. More fields name limits or choices (``max_chars``, ``valid_formats`` ...)."""

    code: str
    """Stable, machine-readable (``unknown_speaker``, ``text_too_long`` ...)."""
    message: str
    type: str
    """OpenAI's error type, from the HTTP status."""
    param: str | None
    """The request field at fault, when there is one."""
    request_id: str
    valid: list[str | int] | ValidRange = []
    """The valid choices, for a value outside a fixed set, or range."""


class ErrorBody(msgspec.Struct):
    """The body of every 4xx/5xx answer."""

    error: ErrorDetail


class SpeechUsage(msgspec.Struct):
    """OpenAI's ``usage`` (``veena.platform.speech_api.usage``)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechAudioDelta(msgspec.Struct, tag="speech.audio.delta", tag_field="type"):
    """One SSE event's JSON: a chunk of encoded audio."""

    audio: str
    """Base64."""


class SpeechAudioDone(msgspec.Struct, tag="speech.audio.done", tag_field="type"):
    """The last SSE event's JSON."""

    usage: SpeechUsage


STATUS_TEXT = {
    400: "The request is invalid (bad JSON, unknown field, value out of range or not offered)",
    401: "No or an invalid API key (servers with keys)",
    402: "The API key has no credits left",
    403: "The API key lacks the scope this route needs",
    404: "No such resource",
    413: "The request body exceeds `server.max_body_bytes`",
    429: "Rate limit or concurrency limit reached; `Retry-After` says when to retry",
    431: "The request headers exceed `server.max_header_bytes`",
    500: "A server bug",
    503: "The server is starting, warming up or draining; retry shortly",
    504: "Synthesis did not finish within the request time limit",
}
SYNTHESIS_STATUSES = (400, 401, 402, 403, 413, 429, 431, 500, 503, 504)


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """``responses=`` for a route decorator (a plugin's routes, say): these statuses answer
    ``ErrorBody``. ``describe`` adds 400/404/413/431/500 where they apply by itself, but only a
    route knows that it checks keys (401/403) or credits (402)."""
    return {s: ResponseSpec(ErrorBody, description=STATUS_TEXT.get(s, HTTPStatus(s).phrase))
            for s in statuses}


def describe(app: Litestar, runtime: Runtime) -> None:
    """Patches the schema ``app`` serves (Litestar caches it) with the runtime's real bodies
    and choices. Idempotent; call once the plugins have loaded their codecs and voices."""
    audio = set(SYNTHESIS.items())
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            audio |= {(route.path_format, method.lower())
                      for method, (handler, _) in route.route_handler_map.items()
                      if handler.opt.get("veena_audio")}
    patch(app.plugins.get(OpenAPIPlugin).provide_openapi_schema(), runtime, audio)


def patch(schema: dict[str, Any], runtime: Runtime,
          audio: Collection[tuple[str, str]] = tuple(SYNTHESIS.items())) -> None:
    """Rewrites the OpenAPI document ``schema`` in place (see the module docstring);
    ``audio``: the (path, method) operations whose 200 is synthesized audio."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _, defs = msgspec.json.schema_components(
        [ErrorBody, GenerateRequest, SpeechRequest, Health, SpeechAudioDelta | SpeechAudioDone],
        ref_template=REF)
    defs["ErrorDetail"]["properties"]["type"]["enum"] = sorted(
        {*OPENAI_TYPES.values(), "invalid_request_error", "server_error"})
    _choices(defs, runtime)
    components.update(defs)
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if isinstance(op, dict) and "responses" in op:
                _responses(path, method, op, runtime, (path, method) in audio)


def _choices(defs: dict[str, Any], runtime: Runtime) -> None:
    """Enums and bounds known only at run time, on the request bodies' properties."""
    codecs = sorted(runtime.codecs, key=lambda c: c.name)
    names = [n for c in codecs for n in (c.name, *c.aliases)]
    rates = sorted({r for c in codecs for r in c.sample_rates})
    voices = sorted({n for s in runtime.speakers for n in (s.name, *s.aliases)})
    languages = sorted({lang for s in runtime.speakers for lang in s.languages})
    text = {"minLength": 1, "maxLength": runtime.config.server.max_text_chars,
            "pattern": r"\S", "description": "At least one non-space character"}
    fmt = {"anyOf": [{"type": "string", "enum": names},
                     {"type": "string", "description": "ElevenLabs-style `codec_rate[_kbps]`",
                      "pattern": rf"^({'|'.join(map(re.escape, names))})_[0-9]+(_[0-9]+)?$"}]}
    # A plugin resolving more names (a caller's cloned voices) makes any string a candidate.
    own = bool(runtime.pm.hook.veena_resolve_speaker.get_hookimpls())
    voice: dict[str, Any] = {"type": "string", "enum": voices}
    if own:
        voice = {"anyOf": [voice, {"type": "string", "description": "a voice id of yours"}]}
    speed = {"minimum": MIN_SPEED, "maximum": MAX_SPEED}
    gen, speech = defs["GenerateRequest"]["properties"], defs["SpeechRequest"]["properties"]
    gen["text"].update(text)
    speech["input"].update(text)
    for props, key in ((gen, "speaker"), (speech, "voice")):
        _narrow(props[key], "string", voice)
    _narrow(gen["format"], "string", fmt)
    _narrow(speech["response_format"], "string", fmt)
    _narrow(speech["stream_format"], "string", {"enum": ["audio", "sse"]})
    _narrow(gen["sample_rate"], "integer", {"enum": rates})
    if languages:
        _narrow(gen["language"], "string", {"enum": languages})
    for props in (gen, speech):
        _narrow(props["speed"], "number", speed)


def _narrow(prop: dict[str, Any], kind: str, extra: dict[str, Any]) -> None:
    """Adds ``extra`` to the ``kind`` branch of an optional property's ``anyOf`` (the
    alternatives of an ``extra`` with its own ``anyOf`` replace that branch)."""
    for i, branch in enumerate(prop.get("anyOf", [prop])):
        if branch.get("type") == kind:
            if "anyOf" in extra:
                prop["anyOf"][i:i + 1] = extra["anyOf"]
            else:
                branch.update(extra)
            return


def _error(status: int) -> dict[str, Any]:
    return {"description": STATUS_TEXT.get(status, HTTPStatus(status).phrase),
            "content": {"application/json": {"schema": ERROR_REF}}}


def _responses(path: str, method: str, op: dict[str, Any], runtime: Runtime,
               audio: bool) -> None:
    """Every error status of ``op`` with the error body, plus those every route can answer."""
    responses: dict[str, Any] = op["responses"]
    statuses = {int(s) for s in responses if s[:1] in "45"} | {431, 500}
    if "requestBody" in op or op.get("parameters"):
        statuses |= {400}
    if method in ("post", "put", "patch"):
        statuses |= {400, 413}
    if "{" in path:
        statuses |= {404}
    if audio:
        statuses |= set(SYNTHESIS_STATUSES)
        responses["200"] = _audio(path == SSE_PATH, runtime)
        if path == TIMESTAMPS_PATH:
            responses["200"]["content"].update(_timestamps())
    if SYNTHESIS.get(path) == method:
        op["requestBody"]["content"]["application/json"]["schema"] = {
            "$ref": REF.format(name="SpeechRequest" if path == SSE_PATH else "GenerateRequest")}
    for status in sorted(statuses):
        responses[str(status)] = _error(status)
    if path == "/v1/tts/health":
        responses["503"] = {"description": "Not ready: status `starting`, `warming` or "
                            "`draining`", "content": {"application/json": {
                                "schema": {"$ref": REF.format(name="Health")}}}}


def _timestamps() -> dict[str, Any]:
    """The ``timestamps: true`` answers of ``/v1/tts/generate`` (docs/websocket.md)."""
    word = {"type": "object", "required": ["text_start", "text_end", "start", "end", "estimated"],
            "properties": {"text_start": {"type": "integer"}, "text_end": {"type": "integer"},
                           "start": {"type": "number"}, "end": {"type": "number"},
                           "estimated": {"type": "boolean"}}}
    event = {"type": "object", "required": ["type"], "properties": {
        "type": {"enum": ["audio", "alignment", "done", "error"]}, "audio": {"type": "string"},
        "words": {"type": "array", "items": word}}}
    whole = {"type": "object", "required": ["audio", "words", "request_id", "audio_seconds"],
             "properties": {"audio": {"type": "string", "contentEncoding": "base64"},
                            "words": {"type": "array", "items": word},
                            "alignment": {"type": "array", "items": {"type": "object"}},
                            "request_id": {"type": "string"}, "format": {"type": "string"},
                            "sample_rate": {"type": "integer"},
                            "audio_seconds": {"type": "number"}, "bytes": {"type": "integer"}}}
    return {
        "text/event-stream": {"schema": {
            "type": "object", "required": ["data"],
            "description": "With `timestamps` and `stream`: `audio` (base64), `alignment` "
                           "(words with offsets into `text` and seconds), then `done`",
            "properties": {"event": {"type": "string"},
                           "data": {"type": "string", "contentMediaType": "application/json",
                                    "contentSchema": event}}}},
        "application/json": {"schema": whole}}


def _audio(sse: bool, runtime: Runtime) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    content = {c.media_type: binary for c in sorted(runtime.codecs, key=lambda c: c.name)}
    text = ("The audio, whole or streamed (chunked), as the format's media type; raw formats "
            "(pcm, mulaw, alaw) carry their rate in `X-Sample-Rate`.")
    if sse:
        event = {"anyOf": [{"$ref": REF.format(name=n)}
                           for n in ("SpeechAudioDelta", "SpeechAudioDone")]}
        content["text/event-stream"] = {"schema": {  # one event (OpenAPI 3.1 has no itemSchema)
            "type": "object", "required": ["data"],
            "description": "`speech.audio.delta` events (base64 `audio`), then one "
                           "`speech.audio.done` with `usage`",
            "properties": {"data": {"type": "string", "contentMediaType": "application/json",
                                    "contentSchema": event}}}}
        text += " With `stream_format: sse`, OpenAI's speech events."
    header = {"schema": {"type": "string"}}
    return {"description": text, "content": content,
            "headers": {h: {**header, "description": d} for h, d in (
                ("X-Request-ID", "The request id (also in logs and error bodies)"),
                ("X-Sample-Rate", "The audio's sample rate in Hz"),
                ("X-Voice", "The voice that spoke"))}}
