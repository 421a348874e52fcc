"""Request and response bodies of the HTTP API, validated with msgspec before a response starts."""

from __future__ import annotations

from typing import Annotated

import msgspec

from veena.platform.errors import VeenaError

Temperature = Annotated[float, msgspec.Meta(ge=0.05, le=2.0)]
TopK = Annotated[int, msgspec.Meta(ge=1, le=1000)]
TopP = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Bitrate = Annotated[int, msgspec.Meta(ge=6_000, le=512_000)]
MIN_SPEED, MAX_SPEED = 0.25, 4.0
"""The speaking-rate factors a request may ask for (OpenAI's range); outside: 400 ``invalid_speed``."""
MAX_PRONUNCIATIONS, MAX_WORD_CHARS, MAX_SPOKEN_CHARS = 100, 100, 300
"""Bounds of a request's ``pronunciations``: entries, characters of a word, of a spoken form."""


class Pronunciation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One entry of a request's ``pronunciations``: ``word`` (or phrase), wherever it stands as
    a whole word, is read as ``spoken``; before the server's lexicon and the number rules."""

    word: str
    spoken: str
    case_sensitive: bool = False


def check_pronunciations(items: list[Pronunciation] | None) -> None:
    """400 ``invalid_pronunciations`` (with the limits) for a list over the bounds or an
    entry whose word is blank."""
    if not items:
        return
    limits = {"max_entries": MAX_PRONUNCIATIONS, "max_word_chars": MAX_WORD_CHARS,
              "max_spoken_chars": MAX_SPOKEN_CHARS}
    problem = None
    if len(items) > MAX_PRONUNCIATIONS:
        problem = f"{len(items)} entries; at most {MAX_PRONUNCIATIONS}"
    for i, p in enumerate(items):
        if problem:
            break
        if not p.word.strip():
            problem = f"entry {i} has a blank word"
        elif len(p.word) > MAX_WORD_CHARS:
            problem = f"entry {i}'s word has {len(p.word)} characters; at most {MAX_WORD_CHARS}"
        elif len(p.spoken) > MAX_SPOKEN_CHARS:
            problem = (f"entry {i}'s spoken form has {len(p.spoken)} characters; at most "
                       f"{MAX_SPOKEN_CHARS}")
    if problem:
        raise VeenaError("invalid_pronunciations", f"pronunciations: {problem}", 400,
                         param="pronunciations", **limits)


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
    speed: float | None = None
    """Speaking-rate factor, ``MIN_SPEED``-``MAX_SPEED`` (1.0 = the voice's own rate)."""
    timestamps: bool | None = None
    """Word times too: with ``stream``, ``text/event-stream`` of ``audio`` (base64) and
    ``alignment`` events; without, one JSON body with the audio (base64) and the words."""
    pronunciations: list[Pronunciation] | None = None
    """How words are read in this request (``check_pronunciations`` bounds them)."""

    def __post_init__(self) -> None:
        check_pronunciations(self.pronunciations)


class VoiceRef(msgspec.Struct):
    """OpenAI's ``{"id": ...}`` form of ``voice``."""

    id: str


OPENAI_FORMAT = "mp3"
"""``response_format`` when a speech request names none, as OpenAI documents."""
OPENAI_PCM_RATE = 24_000
"""OpenAI's ``pcm`` is 24 kHz signed 16-bit little-endian mono."""


class SpeechRequest(msgspec.Struct, kw_only=True):
    """OpenAI-compatible ``POST /v1/audio/speech``. ``model`` is accepted and not used (the
    server's configured synthesizer speaks); unknown fields are ignored, as SDKs add some."""

    input: str
    voice: str | VoiceRef | None = None
    response_format: str | None = None
    model: str | None = None
    speed: float | None = None
    instructions: str | None = None
    stream_format: str | None = None
    """``audio`` (default: the raw audio bytes) or ``sse`` (``speech.audio.delta`` events)."""
    stream: bool | None = None
    pronunciations: list[Pronunciation] | None = None
    """Veena's own: how words are read (as ``GenerateRequest.pronunciations``)."""

    def to_generate(self) -> GenerateRequest:
        """The equivalent generate request: mp3 by default, ``pcm`` at 24 kHz."""
        fmt = self.response_format or OPENAI_FORMAT
        voice = self.voice.id if isinstance(self.voice, VoiceRef) else self.voice
        rate = OPENAI_PCM_RATE if fmt.strip().lower() == "pcm" else None
        return GenerateRequest(text=self.input, speaker=voice, format=fmt, sample_rate=rate,
                               stream=self.stream, speed=self.speed,
                               pronunciations=self.pronunciations)


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


class ModelInfo(msgspec.Struct):
    """One entry of ``GET /v1/models`` in OpenAI's shape."""

    id: str
    created: int
    owned_by: str
    object: str = "model"


class ModelList(msgspec.Struct):
    data: list[ModelInfo]
    object: str = "list"


class Health(msgspec.Struct):
    status: str
    """``ok`` (HTTP 200), or ``starting``, ``warming``, ``draining`` (HTTP 503)."""
    model_version: str
    synthesizer: str
    synthesizers: list[str]
    formats: list[str]
    voices: int
    active_streams: int
