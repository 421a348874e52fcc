"""Cuts text that arrives in pieces (LLM tokens, half words) into speakable segments at sentence
and clause boundaries, keeping each segment's character offsets in the text the client sent."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE = re.compile(r"(?:\.{2,}|…+|[.?!]+|[।॥。！？]+)[\"'”’»)\]}]*(?=\s)|\n")
"""A sentence end is only known once the following whitespace has arrived ("3.5", "e.g")."""
_TAIL = re.compile(r"(?:[^\W\d_]{4,}\.|[^\W\d_][?!]+|[।॥。！？]+)[\"'”’»)\]}]*$")
_LETTERS = re.compile(r"[^\W\d_]*")
"""A sentence end at the very end of the buffer (an LLM's "." token, the space still to come)
counts at once after a word of four letters or more, or after ?/!: "Mr.", "e.g.", "U.S." and
"3." wait for what follows."""
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "no", "fig",
                            "approx", "dept", "inc", "ltd", "co"})
_CLAUSE = re.compile(r"[,;:–—、，；：](?=\s)")


@dataclass(frozen=True, slots=True)
class Segment:
    """One utterance piece: its text and where it sits in the client's text."""

    text: str
    start: int
    end: int


class Segmenter:
    """A text buffer for one context.

    ``feed`` appends text and returns the segments that became complete: each sentence, or
    text up to a clause end once the pending text is at least ``clause_chars``
    long, or up to the last space once it reaches ``max_chars``. ``flush`` returns whatever is
    left (with ``whole_words``, only up to the last space, for the max-wait timer)."""

    def __init__(self, clause_chars: int = 40, max_chars: int = 250) -> None:
        self.clause_chars = clause_chars
        self.max_chars = max_chars
        self._buf = ""
        self._offset = 0  # client offset of _buf[0]

    @property
    def pending(self) -> int:
        """Characters buffered and not yet spoken."""
        return len(self._buf)

    def feed(self, text: str) -> list[Segment]:
        self._buf += text
        out: list[Segment] = []
        while True:
            cut = self._cut()
            if cut is None:
                return out
            seg = self._take(cut)
            if seg is not None:
                out.append(seg)

    def flush(self, whole_words: bool = False) -> Segment | None:
        """Everything buffered as one segment (None when nothing speakable is left)."""
        cut = len(self._buf)
        if whole_words:
            space = max(self._buf.rfind(" "), self._buf.rfind("\n"))
            if space > 0 and not self._buf[-1].isspace():
                cut = space
        return self._take(cut) if cut else None

    def _cut(self) -> int | None:
        buf = self._buf
        for m in _SENTENCE.finditer(buf):
            if _is_end(buf, m.start(), m.group()):
                return m.end()
        m = _TAIL.search(buf)
        if m is not None:
            mark = m.start() + _LETTERS.match(m.group()).end()
            if _is_end(buf, mark, buf[mark:]):
                return m.end()
        if len(buf) >= self.clause_chars:
            for m in _CLAUSE.finditer(buf, self.clause_chars // 2):
                return m.end()
        if len(buf) >= self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space if space > 0 else self.max_chars
        return None

    def _take(self, cut: int) -> Segment | None:
        piece, self._buf = self._buf[:cut], self._buf[cut:]
        start = self._offset
        self._offset += cut
        lead = len(piece) - len(piece.lstrip())
        text = piece.strip()
        if not text:
            return None
        return Segment(text, start + lead, start + lead + len(text))


def _is_end(buf: str, at: int, mark: str) -> bool:
    """Whether the punctuation ``mark`` at ``buf[at]`` ends a sentence: a single "." after an
    abbreviation ("Mr.", "Dr."), a single letter, or a dotted word ("e.g.", "U.S.") does not."""
    if mark[0] != "." or mark.startswith(".."):
        return True
    word = buf[:at].rsplit(None, 1)[-1] if buf[:at].strip() else ""
    return not (word.lower() in _ABBREVIATIONS or "." in word or (len(word) == 1 and word.isalpha()))
