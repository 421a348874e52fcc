"""Whole-word lookup of many entries at once: one compiled alternation, longest entry first."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    """One word (or phrase) and what to say instead."""

    word: str
    spoken: str
    case_sensitive: bool = False


WORD_CHAR = ("[\\w\u0300-\u036f\u0900-\u0963\u0966-\u0dff\u1ab0-\u1aff\u1cd0-\u1cff"
             "\u1dc0-\u1dff\u200c\u200d\u20d0-\u20ff\ua8e0-\ua8ff\ufe20-\ufe2f]")
"""What continues a word: letters, digits, ``_``, and also the combining marks of Latin and of
the Indic blocks (U+0900-U+0DFF but the dandas, Vedic extensions), ZWNJ and ZWJ. ``\\b`` is not
enough: Python's ``\\w`` leaves out the vowel signs and viramas of Indic scripts (Mn, Mc), so
"कर्म" would match inside "कर्मों" and a word ending in a vowel sign ("कर्मी") would never match
at all. (A class of every Unicode mark would cost ~10 ms to compile in each pattern.)"""
BEFORE = rf"(?<!{WORD_CHAR})(?<![<@/])(?<!</)(?<!\w\.)"
AFTER = rf"(?!{WORD_CHAR})(?![.@/]\w)"
"""Where an entry may start and end: a whole word, and not a part of markup (``<laugh>``), an
address (``www.veena.ai``, ``help@veena.ai``, ``/docs/veena``) or a dotted name: those are
read by the rules after the lexicon."""
_SPACES = re.compile(r"\s+")


def clean_word(word: str) -> str:
    """The form an entry is matched in: NFC, format characters out, inner spaces single (the
    ``unicode`` normalizer has already done the same to the request text)."""
    word = unicodedata.normalize("NFC", word)
    word = "".join(ch for ch in word if unicodedata.category(ch) != "Cf")
    return _SPACES.sub(" ", word).strip()


class Matcher:
    """Finds every entry in a text as a whole word: not inside a longer word, in any script.

    The longest entry that fits wins ("New York City" over "New York"). All entries sit in
    one regex, a trie of their lower-case spellings compiled case-insensitively (thousands of
    entries cost about what a dozen do); the spoken form is looked up in a dict, exact
    spelling first, then lower case for case-insensitive entries. Where the longest fit is a
    case-sensitive entry in the wrong case, a second regex (the entries longest first, each
    in its own case mode) decides at that one position. A word given twice (in one case
    mode) keeps its last spoken form.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        exact: dict[str, str] = {}
        folded: dict[str, str] = {}
        for e in entries:
            word = clean_word(e.word)
            if not word:
                continue
            if e.case_sensitive:
                exact[word] = e.spoken
            else:
                folded[word.lower()] = e.spoken
        self.exact, self.folded = exact, folded
        self.size = len(exact) + len(folded)
        self.pattern: re.Pattern[str] | None = None
        self._strict: re.Pattern[str] | None = None
        if not self.size:
            return
        words = [*exact, *folded]
        firsts = "".join(sorted({re.escape(c) for w in words for c in _first_chars(w)}))
        # case-insensitive trie; the first-character test stays case-sensitive (a plain set
        # lookup at every position of the text, the part that costs most)
        self.pattern = re.compile(f"(?-i:(?=[{firsts}])){BEFORE}(?:{_trie(words)}){AFTER}",
                                  re.IGNORECASE)
        if exact:
            alts = [(w, True) for w in exact] + [(w, False) for w in folded]
            alts.sort(key=lambda a: (-len(a[0]), not a[1]))  # equal length: exact first
            body = "|".join(re.escape(w) if cs else f"(?i:{re.escape(w)})" for w, cs in alts)
            self._strict = re.compile(f"{BEFORE}(?:{body}){AFTER}")

    def __bool__(self) -> bool:
        return self.pattern is not None

    def spoken(self, found: str) -> str | None:
        hit = self.exact.get(found)
        return hit if hit is not None else self.folded.get(found.lower())

    def finditer(self, text: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, spoken form) of each entry found, left to right, not overlapping."""
        pattern = self.pattern
        if pattern is None:
            return
        pos = 0
        while (m := pattern.search(text, pos)) is not None:
            s, e = m.span()
            spoken = self.spoken(m.group())
            if spoken is None:  # a case-sensitive entry in another case: ask the strict regex
                strict = self._strict.match(text, s) if self._strict is not None else None
                if strict is None:
                    pos = s + 1
                    continue
                e = strict.end()
                spoken = self.spoken(strict.group())
                if spoken is None:  # cannot happen: the strict regex holds only entries
                    pos = s + 1
                    continue
            yield s, e, spoken
            pos = e


def _key(word: str) -> str:
    low = word.lower()
    return low if len(low) == len(word) else word


def _trie(words: Iterable[str]) -> str:
    """A regex matching exactly ``words`` (in any case, compiled with ``re.IGNORECASE``), longer
    ones first:
    common prefixes are shared, so the engine tests each character once, not once a word."""
    root: dict[str, dict] = {}
    for w in words:
        node = root
        for ch in _key(w):
            node = node.setdefault(ch, {})
        node[""] = {}
    return _node_regex(root)


def _node_regex(node: dict[str, dict]) -> str:
    ends = "" in node
    alts = [re.escape(ch) + _node_regex(child) for ch, child in sorted(node.items()) if ch]
    if not alts:
        return ""
    body = alts[0] if len(alts) == 1 and not ends else f"(?:{'|'.join(alts)})"
    return f"(?:{body})?" if ends and len(alts) == 1 else body + "?" if ends else body


def _first_chars(word: str) -> set[str]:
    """The characters a case-insensitive match of ``word`` can start with."""
    c = word[0]
    return {c, c.lower(), c.upper(), c.casefold()} - {""}
