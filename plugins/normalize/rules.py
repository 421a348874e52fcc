"""What a rewriting rule is: a regex fragment and the function that speaks what it matched."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule needs to know besides the match: the language around it and the settings."""

    lang: str
    """``en``, ``hi`` or ``te``: the language of the sentence the match is in."""
    unknown_tags: str = "drop"


@dataclass(frozen=True, slots=True)
class Rule:
    """``pattern`` is a regex fragment whose own group names start with ``name + "_"`` so that
    every rule can sit in one alternation; ``speak`` turns a match into words."""

    name: str
    pattern: str
    speak: Callable[[re.Match[str], Context], str]


def group(m: re.Match[str], rule: str, name: str) -> str | None:
    return m.group(f"{rule}_{name}")


def word_before(m: re.Match[str], limit: int = 24) -> str:
    """The word just before the match (lower case), for cues such as "in 1947"."""
    head = m.string[max(0, m.start() - limit): m.start()].rstrip()
    return head.rsplit(None, 1)[-1].lower() if head.split() else ""


def text_after(m: re.Match[str], limit: int = 24) -> str:
    return m.string[m.end(): m.end() + limit]
