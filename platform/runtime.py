"""The application runtime: config, plugin manager and registries, built by ``build_runtime``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from veena.platform.ids import new_id
from veena.platform.registry import Registry

if TYPE_CHECKING:
    import pluggy

    from veena.codecs.base import Codec
    from veena.platform.config import VeenaConfig
    from veena.platform.synthesis import Synthesizer
    from veena.platform.telemetry import Telemetry
    from veena.platform.text import Normalizer
    from veena.speakers import SpeakerCatalog

log = logging.getLogger("veena")
T = TypeVar("T")


class Phase(StrEnum):
    """Where the server is in its life; only ``ready`` takes synthesis requests."""

    STARTING = "starting"
    """Start-up hooks have not finished (engines loading, stores connecting)."""
    WARMING = "warming"
    """Started; a warm-up synthesis runs before the first request is let in."""
    READY = "ready"
    DRAINING = "draining"
    """A fault the process cannot recover from (e.g. a GPU fault): requests in flight finish or
    fail, new ones are refused until the process is replaced."""


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What authentication sees of an HTTP request."""

    method: str
    path: str
    headers: dict[str, str]
    client_host: str | None


class RequestRecord(msgspec.Struct, kw_only=True):
    """One finished request, as handed to storage and usage plugins."""

    id: str = msgspec.field(default_factory=new_id)
    """Unique per finished request (a stored copy's key; ``Job.record_id`` for a job)."""
    request_id: str
    key_id: str | None
    speaker: str
    synthesizer: str
    format: str
    sample_rate: int
    stream: bool
    original_text: str
    normalized_text: str
    chunks: int
    chars_requested: int
    chars_delivered: int
    audio_seconds: float
    bytes_sent: int
    ttfb_ms: float | None
    total_ms: float
    outcome: str
    """"completed", "cancelled" (client went away) or "failed"."""
    error_code: str | None = None
    created_at: float = 0.0


@dataclass
class Runtime:
    """Everything the app shares across requests."""

    config: VeenaConfig
    pm: pluggy.PluginManager
    speakers: SpeakerCatalog
    telemetry: Telemetry
    codecs: Registry[Codec] = field(default_factory=lambda: Registry("codec"))
    synthesizers: Registry[Synthesizer] = field(default_factory=lambda: Registry("synthesizer"))
    normalizers: Registry[Normalizer] = field(default_factory=lambda: Registry("normalizer"))
    plugin_configs: dict[str, Any] = field(default_factory=dict)
    plugin_sources: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    """Older string-keyed channel some plugins still publish on; new code uses ``publish``
    and ``find``, which key by type."""
    phase: Phase = Phase.STARTING
    started: bool = False
    """Whether the ``veena_startup`` hooks have run (``lifecycle.start``)."""
    created: float = field(default_factory=time.time)
    """Wall-clock time the runtime was built (the ``created`` of ``/v1/models``)."""
    published: dict[type, Any] = field(default_factory=dict, repr=False)
    """Objects plugins share, by type: ``publish``, ``find``, ``withdraw``."""

    def publish(self, value: T) -> T:
        """Shares a plugin's object (its limiter, cache, engine), found by its type with
        ``find``; one object per type, a later one replaces it."""
        self.published[type(value)] = value
        return value

    def find(self, kind: type[T]) -> T | None:
        """The published object of type ``kind`` (or of a subclass), else None."""
        found = self.published.get(kind)
        if found is None:
            found = next((v for v in self.published.values() if isinstance(v, kind)), None)
        return found

    def withdraw(self, kind: type[T]) -> T | None:
        """Removes and returns the published object of type ``kind`` (None if there is none)."""
        return self.published.pop(kind, None)

    def plugin_config(self, name: str) -> Any:
        """The decoded ``[plugins.NAME]`` settings of plugin ``name`` (its Config defaults)."""
        return self.plugin_configs.get(name)

    def codec(self, name: str) -> Codec | None:
        """The codec called ``name`` or one of its aliases."""
        return self.codecs.get(name) or next(
            (c for c in self.codecs if name.lower() in c.aliases), None)
