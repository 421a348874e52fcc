"""The built-in text normalizer ``text``: Indic-aware expansion of numbers, money, dates, times,
phone numbers, units, abbreviations, URLs, e-mails and symbols for English, Hindi, Telugu and
text that mixes them, with emotion tags mapped onto the canonical set and protected.

Deterministic, idempotent, NFC, and it never raises (a failing rule keeps its text).
See docs/text-processing.md.
"""

from __future__ import annotations

import logging
from typing import Literal

import msgspec

from veena.platform.hookspecs import hookimpl
from veena.platform.job import Job
from veena.platform.runtime import Runtime
from veena.plugins.normalize.engine import Engine
from veena.plugins.normalize.script import clean, language_hint

log = logging.getLogger("veena.normalize")
PLUGIN = "normalize"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.normalize]``"""

    default_language: Literal["en", "hi", "te"] = "en"
    """Language of text with no letters to go by and no ``language`` in the request."""
    unknown_tags: Literal["drop", "keep"] = "drop"
    """What happens to ``<something>`` that is not a known emotion tag."""
    emoji: Literal["drop", "keep"] = "drop"
    """Emoji and pictographs: removed (a voice cannot read them) or passed through."""


class TextNormalizer:
    """Normalizer ``text``; runs after ``unicode`` unless ``[stages] normalizers`` says else."""

    name = "text"
    order = 50

    def __init__(self, config: Config | None = None) -> None:
        config = config or Config()
        self.engine = Engine(config.default_language, config.unknown_tags, config.emoji)
        self.drop_emoji = config.emoji == "drop"

    def normalize(self, text: str, job: Job | None = None) -> str:
        hint = language_hint(job.language) if job is not None else None
        try:
            return self.engine.normalize(text, hint)
        except Exception:  # never raise: fall back to the clean-up alone
            log.warning("normalization failed; using the cleaned text", exc_info=True)
            try:
                return clean(text, self.drop_emoji)
            except Exception:
                return text

    def normalize_for(self, text: str, language: str | None = None) -> str:
        """Normalizes without a request (the CLI, tests, benchmarks)."""
        return self.engine.normalize(text, language_hint(language))


@hookimpl
def veena_register_normalizers(runtime: Runtime):
    return [TextNormalizer(runtime.plugin_config(PLUGIN))]
