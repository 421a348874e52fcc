"""The JSON messages of ``WS /v1/tts/ws``: what a client sends, validated with msgspec."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from veena.platform.errors import VeenaError
from veena.platform.schemas import GenerateRequest, Bitrate, MaxTokens, Pronunciation, \
    Temperature, TopK, TopP

ContextId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
DEFAULT_CONTEXT = "default"


class Start(msgspec.Struct, tag="start", tag_field="type", forbid_unknown_fields=True,
            kw_only=True):
    """Opens the session: output settings shared by every context, and (for browsers, which
    cannot set headers on a WebSocket) the API key."""

    voice: str | None = None
    format: str | None = None
    sample_rate: int | None = None
    bitrate: Bitrate | None = None
    language: str | None = None
    normalize: bool | None = None
    temperature: Temperature | None = None
    top_k: TopK | None = None
    top_p: TopP | None = None
    seed: int | None = None
    max_tokens: MaxTokens | None = None
    speed: float | None = None
    """Speaking-rate factor where the server supports it (as HTTP's ``speed``)."""
    api_key: str | None = None
    binary: bool = True
    """Audio as binary frames (after a JSON ``audio`` event) or as base64 inside the event."""
    timestamps: bool = False
    """Send an ``alignment`` event per spoken segment (character offsets -> audio seconds)."""
    pronunciations: list[Pronunciation] | None = None
    """How words are read in every context of the session (as HTTP's ``pronunciations``)."""

    def __repr__(self) -> str:  # never show the key
        return f"Start(voice={self.voice!r}, format={self.format!r})"


class Text(msgspec.Struct, tag="text", tag_field="type", forbid_unknown_fields=True):
    text: str
    context_id: ContextId = DEFAULT_CONTEXT


class Flush(msgspec.Struct, tag="flush", tag_field="type", forbid_unknown_fields=True):
    context_id: ContextId = DEFAULT_CONTEXT


class End(msgspec.Struct, tag="end", tag_field="type", forbid_unknown_fields=True):
    """Speaks what is left of one context and finishes it; without ``context_id``, every
    context, and the socket closes once they are done."""

    context_id: ContextId | None = None


class Cancel(msgspec.Struct, tag="cancel", tag_field="type", forbid_unknown_fields=True):
    """Stops one context (or, without ``context_id``, every context) at once."""

    context_id: ContextId | None = None


def request(start: Start, text: str, **fields: object) -> GenerateRequest:
    """The ``GenerateRequest`` for ``text`` with this session's settings (``fields`` override)."""
    options = dict(speaker=start.voice, format=start.format, sample_rate=start.sample_rate,
                   bitrate=start.bitrate, normalize=start.normalize, chunking=False,
                   language=start.language, temperature=start.temperature, top_k=start.top_k,
                   top_p=start.top_p, seed=start.seed, max_tokens=start.max_tokens, stream=True)
    if start.speed is not None:
        options["speed"] = start.speed
    if start.pronunciations:
        options["pronunciations"] = start.pronunciations
    options.update(fields)
    try:
        return GenerateRequest(text=text, **options)
    except TypeError as exc:  # a server whose requests have no such field
        raise VeenaError("invalid_message", f"this server does not support {exc}", 400) from exc


Message = Start | Text | Flush | End | Cancel
_DECODER = msgspec.json.Decoder(Message)


def parse(data: str | bytes) -> Message:
    """One client message; a 400 ``invalid_message`` names what is wrong."""
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise VeenaError("invalid_message", str(exc).replace("`$.", "`"), 400) from exc
    except msgspec.DecodeError as exc:
        raise VeenaError("invalid_json", f"message is not valid JSON: {exc}", 400) from exc
