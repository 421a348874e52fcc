"""``[plugins.websocket]``: the limits of ``WS /v1/tts/ws``."""

from __future__ import annotations

import msgspec


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.websocket]``."""

    max_wait_s: float = 0.4
    """Text without a sentence or clause end is spoken (up to its last whole word) once it has
    waited this long; 0: only boundaries, ``flush`` and ``end`` speak it."""
    clause_chars: int = 40
    """A clause end (``,`` ``;`` ``:`` ...) ends a segment once this much text is pending."""
    max_segment_chars: int = 250
    """A segment is cut at its last space when no boundary came by this length."""
    max_message_bytes: int = 65_536
    """A bigger message is refused and the socket closed (1009)."""
    max_buffered_chars: int = 8_000
    """Unspoken text a context may hold; more is refused with ``text_buffer_full``."""
    max_contexts: int = 8
    """Open contexts per socket."""
    idle_timeout_s: float = 60.0
    """A socket with no message and no synthesis for this long is closed (4408)."""
    max_unsent_bytes: int = 1_048_576
    """Audio queued for a socket beyond this pauses its synthesis until the client reads."""
    max_ahead_s: float = 2.0
    """A context's synthesis pauses while it is this much audio ahead of what the socket has
    taken (a slow reader, or a client that stopped reading)."""
    close_drain_s: float = 2.0
    """On close, how long queued events still get to go out."""

    def __post_init__(self) -> None:
        if min(self.clause_chars, self.max_segment_chars, self.max_message_bytes,
               self.max_buffered_chars, self.max_contexts, self.max_unsent_bytes) < 1:
            raise ValueError("websocket limits must be positive")
        if self.max_wait_s < 0 or self.max_ahead_s <= 0 or self.idle_timeout_s <= 0 or self.close_drain_s < 0:
            raise ValueError("websocket times must not be negative")
