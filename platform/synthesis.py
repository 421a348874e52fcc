"""The contract every synthesizer (voice back-end) implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from veena.platform.audio import PCM

if TYPE_CHECKING:
    from veena.platform.job import Job


@runtime_checkable
class Synthesizer(Protocol):
    """Turns a job's text chunks into a stream of PCM blocks at ``sample_rate``.

    ``stream`` must be an async generator that yields audio as soon as it exists, calls
    ``job.mark_chunk_started(i)`` when audio of ``job.chunks[i]`` begins, and stops work promptly
    (freeing threads, engine slots) when it is closed or cancelled.
    """

    name: str
    sample_rate: int

    def stream(self, job: Job) -> AsyncIterator[PCM]: ...
