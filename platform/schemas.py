"""Request and response bodies of the HTTP API, validated with msgspec before a response starts."""

from __future__ import annotations

from typing import Annotated

import msgspec

Temperature = Annotated[float, msgspec.Meta(ge=0.05, le=2.0)]
TopK = Annotated[int, msgspec.Meta(ge=1, le=1000)]
TopP = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Bitrate = Annotated[int, msgspec.Meta(ge=6_000, le=512_000)]


class GenerateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/tts/generate``. Fields left out take the configured defaults."""

    text: str
    speaker: str | None = None
    format: str | None = None
    """Codec name or alias, or an ElevenLabs-style ``codec_rate[_kbps]`` such as ``mp3_44100_128``."""
    stream: bool | None = None
    sample_rate: int | None = None
    bitrate: Bitrate | None = None
    normalize: bool | None = None
    chunking: bool | None = None
    language: str | None = None
    temperature: Temperature | None = None
    top_k: TopK | None = None
    top_p: TopP | None = None
    seed: int | None = None
    max_tokens: MaxTokens | None = None


class SpeechRequest(msgspec.Struct, kw_only=True):
    """OpenAI-compatible ``POST /v1/audio/speech`` (``model`` and ``speed`` are accepted, unused)."""

    input: str
    voice: str | None = None
    response_format: str | None = None
    model: str | None = None
    speed: float | None = None
    stream: bool | None = None

    def to_generate(self) -> GenerateRequest:
        return GenerateRequest(text=self.input, speaker=self.voice, format=self.response_format,
                               stream=self.stream)


class VoiceInfo(msgspec.Struct):
    name: str
    aliases: tuple[str, ...]
    languages: tuple[str, ...]
    gender: str
    description: str


class FormatInfo(msgspec.Struct):
    name: str
    media_type: str
    aliases: tuple[str, ...]
    sample_rates: tuple[int, ...]
    default_sample_rate: int | None
    """Sent when a request names no rate; None: the voice's own rate, at least
    ``default_rate_floor``, else the next rate up."""
    default_rate_floor: int = 0


class Health(msgspec.Struct):
    status: str
    """``ok`` (HTTP 200), or ``starting``, ``warming``, ``draining`` (HTTP 503)."""
    model_version: str
    synthesizer: str
    synthesizers: list[str]
    formats: list[str]
    voices: int
    active_streams: int
