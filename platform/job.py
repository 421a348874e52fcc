"""One synthesis request as it moves through the pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veena.platform.ids import new_id

if TYPE_CHECKING:
    from veena.platform.schemas import Pronunciation
    from veena.speakers import Speaker


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
    """The resolved output: codec name, sample rate and bitrate (bits/s, None = codec default)."""

    codec: str
    sample_rate: int
    bitrate: int | None = None


@dataclass(slots=True)
class Principal:
    """Who is calling: an API key's identity and limits, or the anonymous local user."""

    key_id: str | None = None
    owner: str | None = None
    scopes: tuple[str, ...] = ()
    credits: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
    synthesizer: str
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
    state: dict[str, Any] = field(default_factory=dict)

    def mark_chunk_started(self, index: int) -> None:
        """Synthesizers call this when audio of ``chunks[index]`` starts to flow."""
        self.state["chunk_started"] = max(index, self.state.get("chunk_started", -1))

    @property
    def chars_delivered(self) -> int:
        """Characters of the chunks whose audio reached the client (the basis for billing)."""
        if not self.chunks:
            return 0
        return sum(len(c) for c in self.chunks[: self.chunks_delivered])
