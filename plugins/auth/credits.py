"""The credit rule: what a request may cost (held before synthesis) and what it does cost.

    cost = per_request + per_char * characters + per_audio_second * seconds, rounded up

Characters are those of the chunks whose audio reached the client (the record's
``chars_delivered``), so a request cut off after its first sentence pays for that sentence
only, and one that failed or was refused before any audio went out pays nothing. The hold uses
every chunk's characters and, for ``per_audio_second``, an estimate of
``hold_seconds_per_char`` seconds a character; the charge never exceeds the hold.
"""

from __future__ import annotations

import math

import msgspec

from veena.platform.job import Job
from veena.platform.runtime import RequestRecord


class CreditRule(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.auth.credits]``."""

    per_char: float = 1.0
    per_audio_second: float = 0.0
    per_request: float = 0.0
    hold_seconds_per_char: float = 0.2
    """Upper estimate of speech per character, used to size the hold when billing by time."""

    def __post_init__(self) -> None:
        for name in ("per_char", "per_audio_second", "per_request", "hold_seconds_per_char"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def hold(self, job: Job) -> int:
        """What the request ``job`` may cost, before synthesis."""
        chars = sum(len(c) for c in job.chunks)
        return _credits(self.per_request + self.per_char * chars
                        + self.per_audio_second * chars * self.hold_seconds_per_char)

    def charge(self, record: RequestRecord) -> int:
        """What the finished request ``record`` costs."""
        chars = record.chars_delivered
        if chars == 0:  # no chunk's audio reached the client
            return 0
        seconds = record.audio_seconds
        if record.outcome != "completed" and record.chunks:
            # Audio counted upstream may not all have been sent: scale by what was delivered.
            seconds *= min(1.0, chars / (record.chars_requested or 1))
        return _credits(self.per_request + self.per_char * chars + self.per_audio_second * seconds)


def _credits(value: float) -> int:
    return max(0, math.ceil(value - 1e-9))
