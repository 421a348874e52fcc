"""The built-in chunker: sentence boundaries for English, Hindi and Telugu, a maximum chunk
length with clause and word fallbacks, small fragments merged, emotion tags kept with their
sentence. Without this plugin (``disable = ["chunk"]``) the text is one chunk."""

from __future__ import annotations

import msgspec

from veena.platform.hookspecs import hookimpl
from veena.platform.job import Job
from veena.platform.runtime import Runtime
from veena.plugins.chunk.sentences import chunk

PLUGIN = "chunk"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.chunk]``"""

    max_chars: int = 300
    """No chunk is longer, unless one unbreakable token is."""
    min_chars: int = 20
    """A sentence shorter than this merges with a neighbour (while the result fits)."""
    short_chars: int = 80
    """Text up to this long is one chunk."""

    def __post_init__(self) -> None:
        if self.max_chars < 20:
            raise ValueError("`max_chars` must be at least 20")
        if not 0 <= self.min_chars <= self.max_chars:
            raise ValueError("`min_chars` must be between 0 and `max_chars`")


@hookimpl
def veena_chunk_text(text: str, job: Job, runtime: Runtime) -> list[str] | None:
    if not job.chunking:
        return [text]
    cfg = runtime.plugin_config(PLUGIN) or Config()
    return chunk(text, cfg.max_chars, cfg.min_chars, cfg.short_chars)
