"""A small sentence splitter used by the core chunking stage (``.?!``, danda, double danda)."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"(?:(?<=[.?!।॥])|(?<=[.?!।॥][\"'”’)\]]))\s+")


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Sentences of ``text``; a sentence longer than ``max_chars`` is split at whitespace."""
    out: list[str] = []
    for sentence in _BOUNDARY.split(text.strip()):
        sentence = sentence.strip()
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            out.append(sentence)
    return out
