"""The one list of emotion tags, shared by the text normalizer, the chunker and the synthesizers.

A canonical tag is written ``<name>`` (lower case, ``_`` between words). People type the same
thing many ways (``[laughs]``, ``(laughing)``, ``*sigh*``, ``<Laugh>``, ``< sigh >``); the
normalizer maps every spelling in ``SPELLINGS`` onto the canonical tag, and synthesizers read
only canonical tags. A synthesizer that cannot voice a tag drops it; it never reads it aloud.
"""

from __future__ import annotations

import re

CANONICAL: tuple[str, ...] = (
    # sounds: a short non-verbal event voiced where the tag stands
    "laugh", "laugh_harder", "chuckle", "giggle", "sigh", "gasp", "cough", "clear_throat",
    "sniff", "groan", "yawn", "gulp", "exhale", "cry", "scream",
    # styles: how the words after the tag are spoken
    "whisper", "angry", "excited", "sad", "sarcastic", "curious", "sing",
)
"""Canonical tag names, without the angle brackets."""

TAGS: frozenset[str] = frozenset(f"<{name}>" for name in CANONICAL)
"""Canonical tags as they appear in normalized text, e.g. ``<laugh>``."""

SPELLINGS: dict[str, str] = {
    # laugh
    "laugh": "laugh", "laughs": "laugh", "laughing": "laugh", "laughter": "laugh",
    "laughed": "laugh", "lol": "laugh", "haha": "laugh",
    "laugh harder": "laugh_harder", "laughs harder": "laugh_harder",
    "laughing hard": "laugh_harder",
    "laughs hard": "laugh_harder", "laughing harder": "laugh_harder", "big laugh": "laugh_harder",
    "chuckle": "chuckle", "chuckles": "chuckle", "chuckling": "chuckle",
    "giggle": "giggle", "giggles": "giggle", "giggling": "giggle",
    "sigh": "sigh", "sighs": "sigh", "sighing": "sigh", "sighed": "sigh",
    "gasp": "gasp", "gasps": "gasp", "gasping": "gasp",
    "cough": "cough", "coughs": "cough", "coughing": "cough",
    "clear throat": "clear_throat", "clears throat": "clear_throat",
    "clearing throat": "clear_throat", "throat clear": "clear_throat",
    "sniff": "sniff", "sniffs": "sniff", "sniffle": "sniff", "sniffles": "sniff",
    "sniffling": "sniff", "sniffing": "sniff",
    "groan": "groan", "groans": "groan", "groaning": "groan",
    "yawn": "yawn", "yawns": "yawn", "yawning": "yawn",
    "gulp": "gulp", "gulps": "gulp", "gulping": "gulp",
    "exhale": "exhale", "exhales": "exhale", "exhaling": "exhale",
    "cry": "cry", "cries": "cry", "crying": "cry", "sob": "cry", "sobs": "cry", "sobbing": "cry",
    "scream": "scream", "screams": "scream", "screaming": "scream",
    "whisper": "whisper", "whispers": "whisper", "whispering": "whisper",
    "angry": "angry", "angrily": "angry", "anger": "angry",
    "excited": "excited", "excitedly": "excited", "excitement": "excited",
    "sad": "sad", "sadly": "sad", "sadness": "sad",
    "sarcastic": "sarcastic", "sarcastically": "sarcastic", "sarcasm": "sarcastic",
    "curious": "curious", "curiously": "curious",
    "sing": "sing", "sings": "sing", "singing": "sing",
}
"""Typed spelling (lower case, single spaces; ``_`` and ``-`` read as spaces) -> canonical name."""

TAG_RE = re.compile(r"<([a-z]+(?:_[a-z]+)*)>")
"""A canonical-looking tag in normalized text (known or not)."""


def canonical(spelling: str) -> str | None:
    """The canonical name for a typed spelling (``"Laughs"``, ``"clear-throat"``), or None."""
    key = " ".join(spelling.lower().replace("_", " ").replace("-", " ").split())
    return SPELLINGS.get(key)


def is_tag(token: str) -> bool:
    """Whether ``token`` is a canonical tag such as ``<sigh>``."""
    return token in TAGS
