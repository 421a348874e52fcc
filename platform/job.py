"""One synthesis request as it moves through the pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from veena.platform.ids import new_id

if TYPE_CHECKING:
    from veena.codecs.base import Codec
    from veena.platform.synthesis import Synthesizer
    from veena.platform.schemas import Pronunciation
    from veena.speakers import Speaker

T = TypeVar("T")


@dataclass(slots=True)
class SamplingOptions:
    """Per-request sampling knobs for neural synthesizers (ignored by rule-based ones)."""

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    seed: int | None = None
    max_tokens: int | None = None


@dataclass(slots=True)
class OutputFormat:
    """The resolved output: the codec itself, sample rate and bitrate (bits/s, None = codec
    default), all checked against the codec once, when the request is prepared."""

    codec: Codec
    sample_rate: int
    bitrate: int | None = None


@dataclass(slots=True)
class Principal:
    """Who is calling: an API key's identity and limits, or the anonymous local user."""

    key_id: str | None = None
    key_prefix: str | None = None
    """The key's public prefix (shown in listings), never the secret."""
    owner: str | None = None
    scopes: tuple[str, ...] = ()
    credits: float | None = None
    rate_per_minute: int | None = None
    """This caller's own request rate limit; None: the rate limiter's default (0: none)."""
    max_streams: int | None = None
    """This caller's own limit of concurrent streams; None: the rate limiter's default."""
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers admission attached for this caller (e.g. ``RateLimit-*``)."""


@dataclass(slots=True)
class Timings:
    """Monotonic timestamps (seconds) of one request's milestones."""

    received: float = field(default_factory=time.perf_counter)
    synthesis_started: float | None = None
    first_audio: float | None = None
    first_byte: float | None = None
    finished: float | None = None

    def ms_since_received(self, t: float | None) -> float | None:
        return None if t is None else (t - self.received) * 1000.0


@dataclass(slots=True)
class Job:
    """Everything one request carries between stages; stages fill in their part."""

    request_id: str
    text: str
    speaker: Speaker
    synthesizer: Synthesizer
    output: OutputFormat
    record_id: str = field(default_factory=new_id)
    """The ``id`` of this job's finished record (``RequestRecord``): unique per job."""
    stream: bool = True
    normalize: bool = True
    chunking: bool = True
    language: str | None = None
    pronunciations: tuple[Pronunciation, ...] = ()
    """The request's own word -> spoken form entries, read before the server's lexicon."""
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    speed: float = 1.0
    """The speaking-rate factor asked for (1.0: the voice's own)."""
    tempo: float | None = None
    """The part of ``speed`` the synthesizer does not apply itself: a time-stretch factor."""
    principal: Principal | None = None
    normalized_text: str | None = None
    chunks: list[str] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    audio_seconds: float = 0.0
    bytes_sent: int = 0
    encode_seconds: float = 0.0
    chunks_delivered: int = 0
    outcome: str = "pending"
    extra_headers: dict[str, str] = field(default_factory=dict)
    chunk_started: int = -1
    """The highest chunk index whose audio has started (``mark_chunk_started``); -1: none."""
    deadline_exceeded: bool = False
    """Synthesis was stopped at ``server.request_deadline_s``; the stream ended early."""
    stop_reason: str | None = None
    """Set by ``Pipeline.stop_streams``: the stream ends at its next block with this code."""
    state: dict[Any, Any] = field(default_factory=dict)
    """Per-request values of plugins, each keyed by the plugin's own type: ``attach``/``get``."""

    def mark_chunk_started(self, index: int) -> None:
        """Synthesizers call this when audio of ``chunks[index]`` starts to flow."""
        if index > self.chunk_started:
            self.chunk_started = index

    def attach(self, value: T) -> T:
        """Attaches a plugin's per-request object, found again by its type with ``get``."""
        self.state[type(value)] = value
        return value

    def get(self, kind: type[T]) -> T | None:
        """The object of type ``kind`` a plugin attached to this request, else None."""
        return self.state.get(kind)

    @property
    def chars_delivered(self) -> int:
        """Characters of the chunks whose audio reached the client (the basis for billing)."""
        if not self.chunks:
            return 0
        return sum(len(c) for c in self.chunks[: self.chunks_delivered])
