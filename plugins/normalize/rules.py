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
    every rule can sit in one alternation; ``speak`` turns a match into words.

    A rule anchored on a character in the middle of what it rewrites (``@`` of an e-mail, the
    ``.`` after an abbreviation) has ``back=True``: ``speak(m, ctx, last)`` may return
    ``(words, start)`` to take in the text from ``start`` (never before ``last``, the end of
    the previous rewrite) up to the match. Any rule may return None to leave its match as is.
    """

    name: str
    pattern: str
    speak: Callable[..., str | tuple[str, int] | None]
    back: bool = False
    guard: str = ""
    """A cheap lookahead that holds wherever ``pattern`` can match; the regex engine tries
    the full pattern only where it does (speed: most rules fail at most digits)."""
    first: str = ""
    """A character class (``0-9``) every match starts with: neighbouring rules with the same
    one share a single lookahead, so elsewhere (letters, symbols) they cost one test, not one
    each."""


def group(m: re.Match[str], rule: str, name: str) -> str | None:
    """Group ``name`` of ``rule``'s pattern (whose groups are called ``rule_name``)."""
    return m.group(f"{rule}_{name}")  # faster than a cache of the joined names


def word_before(m: re.Match[str], limit: int = 24) -> str:
    """The word just before the match (lower case), for cues such as "in 1947"."""
    head = m.string[max(0, m.start() - limit): m.start()].rstrip()
    return head.rsplit(None, 1)[-1].lower() if head.split() else ""


def text_after(m: re.Match[str], limit: int = 24) -> str:
    return m.string[m.end(): m.end() + limit]
