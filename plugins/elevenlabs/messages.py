"""ElevenLabs' WebSocket text-to-speech messages (``stream-input`` and ``multi-stream-input``):
the query parameters and client messages as their API reference names them, and their
translation into the messages of Veena's own socket (``veena.plugins.websocket.protocol``)."""

from __future__ import annotations

from typing import Any

import msgspec

from veena.platform.errors import VeenaError, invalid_choice
from veena.plugins.elevenlabs.schema import (DEFAULT_OUTPUT_FORMAT, NORMALIZATION,
                                             OUTPUT_FORMATS, VoiceSettings)
from veena.plugins.websocket.protocol import DEFAULT_CONTEXT, Start

DEFAULT_INACTIVITY_S = 20.0
"""ElevenLabs' ``inactivity_timeout`` default; 180 is its largest value."""
MAX_INACTIVITY_S = 180.0
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


class GenerationConfig(msgspec.Struct, kw_only=True):
    """``generation_config``: accepted; the segmenter decides when to speak (docs/elevenlabs.md)."""

    chunk_length_schedule: list[float] | None = None


class ClientMessage(msgspec.Struct, kw_only=True):
    """Any client message of either route; which one it is follows from the fields present.
    Unknown fields are ignored, as ElevenLabs' own clients add some."""

    text: str | None = None
    context_id: str | None = None
    flush: bool | None = None
    try_trigger_generation: bool | None = None
    close_context: bool | None = None
    close_socket: bool | None = None
    voice_settings: VoiceSettings | None = None
    generation_config: GenerationConfig | None = None
    generator_config: GenerationConfig | None = None
    pronunciation_dictionary_locators: list[Any] | None = None
    xi_api_key: str | None = None
    xi_api_key_header: str | None = msgspec.field(default=None, name="xi-api-key")
    authorization: str | None = None

    def __repr__(self) -> str:  # never show a key
        return f"ClientMessage(context_id={self.context_id!r})"

    def key(self) -> str | None:
        """The API key this message carries (``xi-api-key``, ``xi_api_key`` or a bearer
        ``authorization``), if any."""
        if self.xi_api_key_header or self.xi_api_key:
            return self.xi_api_key_header or self.xi_api_key
        return bearer(self.authorization)


def bearer(value: str | None) -> str | None:
    """The key of an ``authorization`` value, with or without ``Bearer ``."""
    if not value or not value.strip():
        return None
    value = value.strip()
    return value[7:].strip() if value.lower().startswith("bearer ") else value


_DECODER = msgspec.json.Decoder(ClientMessage)


def parse(data: str | bytes) -> ClientMessage:
    """One client message; ``invalid_input_message`` (ElevenLabs' code) when it is not one."""
    try:
        return _DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise VeenaError("invalid_input_message", "could not parse the input message: it must "
                         f"be JSON following ElevenLabs' protocol ({exc})", 400) from exc


class Query(msgspec.Struct, kw_only=True):
    """The query parameters of both routes, checked."""

    output_format: str = DEFAULT_OUTPUT_FORMAT
    language_code: str | None = None
    normalize: bool | None = None
    seed: int | None = None
    inactivity_s: float = DEFAULT_INACTIVITY_S
    sync_alignment: bool = False
    auto_mode: bool = False

    def __repr__(self) -> str:
        return f"Query(output_format={self.output_format!r})"

    def start(self, voice_id: str, first: ClientMessage) -> Start:
        """The ``start`` message of Veena's socket for this connection and its first message
        (whose key, when it has one, wins over the upgrade request's headers)."""
        speed = first.voice_settings.speed if first.voice_settings else None
        return Start(voice=voice_id, format=self.output_format, language=self.language_code,
                     normalize=self.normalize, seed=self.seed, speed=speed,
                     api_key=first.key(), binary=False, timestamps=True)


def query(params: dict[str, str]) -> Query:
    """Checks the query parameters; ElevenLabs' others (``model_id``, ``enable_logging``,
    ``enable_ssml_parsing``, ``optimize_streaming_latency``...) are accepted and unused. A key
    in the query (``authorization``) is not taken: the server's connection log line shows the
    query string, and keys are never logged."""
    fmt = (params.get("output_format") or DEFAULT_OUTPUT_FORMAT).strip().lower()
    if fmt not in OUTPUT_FORMATS:
        raise invalid_choice("unsupported_output_format", "output_format",
                             params.get("output_format"), list(OUTPUT_FORMATS))
    mode = (params.get("apply_text_normalization") or "auto").strip().lower()
    if mode not in NORMALIZATION:
        raise invalid_choice("invalid_text_normalization", "apply_text_normalization",
                             params.get("apply_text_normalization"), list(NORMALIZATION))
    inactivity = _number("inactivity_timeout", params.get("inactivity_timeout"),
                         DEFAULT_INACTIVITY_S)
    if not 0 < inactivity <= MAX_INACTIVITY_S:
        raise VeenaError("invalid_inactivity_timeout", "inactivity_timeout must be more than 0 "
                         f"and at most {MAX_INACTIVITY_S:g} seconds", 400,
                         param="inactivity_timeout")
    seed = params.get("seed")
    return Query(output_format=fmt, language_code=params.get("language_code") or None,
                 normalize=NORMALIZATION[mode],
                 seed=int(_number("seed", seed, 0)) if seed else None,
                 inactivity_s=inactivity, sync_alignment=_flag(params, "sync_alignment"),
                 auto_mode=_flag(params, "auto_mode"))


def _number(name: str, value: str | None, default: float) -> float:
    if value is None or not value.strip():
        return default
    try:
        return float(value)
    except ValueError:
        raise VeenaError(f"invalid_{name}", f"{name} must be a number", 400, param=name) from None


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "").strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise VeenaError(f"invalid_{name}", f"{name} must be true or false", 400, param=name,
                     valid=["false", "true"])


def veena(msg: ClientMessage, *, multi: bool, auto_mode: bool) -> list[dict[str, Any]]:
    """The Veena messages one ElevenLabs message after the first stands for, in order:
    ``{"text": ""}`` ends the utterance (``stream-input``) or keeps a context alive
    (``multi-stream-input``); ``close_socket`` ends every context; ``flush`` (and, with
    ``auto_mode``, every text) speaks what is buffered. ``close_context`` is the caller's
    (it depends on what was flushed). ``try_trigger_generation`` and the generation schedule
    change nothing: the segmenter speaks each sentence as soon as it is complete."""
    cid = (msg.context_id or DEFAULT_CONTEXT) if multi else DEFAULT_CONTEXT
    if msg.close_socket:
        return [{"type": "end"}]
    if msg.text == "" and not msg.flush:
        return [] if multi else [{"type": "end"}]
    out: list[dict[str, Any]] = []
    if msg.text:
        out.append({"type": "text", "text": msg.text, "context_id": cid})
    if msg.flush or (auto_mode and msg.text and msg.text.strip()):
        out.append({"type": "flush", "context_id": cid})
    return out
