"""The contract for text normalizers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from veena.platform.job import Job


@runtime_checkable
class Normalizer(Protocol):
    """Rewrites text into what a voice should read. Deterministic, idempotent, never raises.

    An optional integer attribute ``order`` (default 100) places a normalizer among those that
    ``[stages] normalizers`` does not list: lower runs earlier (built-ins: ``unicode`` 10,
    ``text`` 50).
    """

    name: str

    def normalize(self, text: str, job: Job) -> str: ...
