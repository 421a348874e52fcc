"""Where a piece of rewritten text came from: maps character spans of a stage's output (the
normalized text, the chunks) back to spans of its input, so times of spoken words can name
characters of the text the client sent.

A ``TextMap`` is a list of pieces ``(out_start, out_end, src_start, src_end, exact)``: an exact
piece is text copied unchanged (character for character), an inexact one a rewrite that maps
as a whole ("₹2,50,000" -> "two lakh fifty thousand rupees"). Maps compose (``then``), so every
text-rewriting stage (a lexicon, the normalizers, the chunker) adds its own: a stage that knows
its edits records them exactly (``from_edits``); for one that does not, ``between`` works the
map out from its input and output text by aligning their words.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Protocol

_TOKEN = re.compile(r"[\w\u0900-\u0963\u0966-\u0DFF\u0300-\u036F\u200C\u200D]+|[^\w\s]")
"""Words (letters, digits and the combining marks of Indic scripts) and single symbols."""


class SourceMap(Protocol):
    """Anything that maps an output span back to a span of the source."""

    def source(self, start: int, end: int) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Piece:
    out_start: int
    out_end: int
    src_start: int
    src_end: int
    exact: bool


class TextMap:
    """Output spans -> source spans, for one rewrite of ``src_len`` characters into
    ``out_len``."""

    def __init__(self, pieces: list[Piece], src_len: int, out_len: int) -> None:
        self.pieces = sorted(pieces, key=lambda p: p.out_start)
        self._starts = [p.out_start for p in self.pieces]
        self.src_len, self.out_len = src_len, out_len

    @classmethod
    def identity(cls, length: int) -> TextMap:
        return cls([Piece(0, length, 0, length, True)], length, length)

    @classmethod
    def from_edits(cls, src: str, edits: list[tuple[int, int, str]]) -> TextMap:
        """The map of replacing ``src[start:end]`` by ``text`` for each non-overlapping edit
        ``(start, end, text)``, given in order; the rest of ``src`` is copied."""
        pieces, at, out = [], 0, 0
        for start, end, text in edits:
            if start > at:
                pieces.append(Piece(out, out + start - at, at, start, True))
                out += start - at
            pieces.append(Piece(out, out + len(text), start, end, False))
            out += len(text)
            at = end
        if at < len(src):
            pieces.append(Piece(out, out + len(src) - at, at, len(src), True))
            out += len(src) - at
        return cls(pieces, len(src), out)

    @classmethod
    def between(cls, src: str, out: str) -> TextMap:
        """The map of a rewrite of ``src`` into ``out`` worked out from the texts alone: words
        and symbols found unchanged, in order, map exactly; each run of output words between
        them maps as a whole to the source run it replaced."""
        if src == out:
            return cls.identity(len(src))
        a, b = list(_TOKEN.finditer(src)), list(_TOKEN.finditer(out))
        pieces: list[Piece] = []
        for op, i1, i2, j1, j2 in _align([m.group() for m in a], [m.group() for m in b]):
            if op == "equal":
                pieces.extend(Piece(b[j].start(), b[j].end(), a[i].start(), a[i].end(), True)
                              for i, j in zip(range(i1, i2), range(j1, j2)))
            elif j2 > j1:  # replaced, or inserted: the output words come from that source run
                s1 = a[i1].start() if i2 > i1 else (a[i1 - 1].end() if i1 else 0)
                s2 = a[i2 - 1].end() if i2 > i1 else s1
                pieces.append(Piece(b[j1].start(), b[j2 - 1].end(), s1, s2, False))
        return cls(pieces, len(src), len(out))

    def source(self, start: int, end: int) -> tuple[int, int]:
        """The source span the output span ``[start, end)`` comes from (an empty span where
        the output was inserted from nothing)."""
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        lo = hi = None
        for p in self.pieces[i:]:
            if p.out_start >= max(end, start + 1):
                break
            if p.out_end <= start:
                continue
            if p.exact:
                s = p.src_start + max(start, p.out_start) - p.out_start
                e = p.src_start + min(end, p.out_end) - p.out_start
            else:
                s, e = p.src_start, p.src_end
            lo = s if lo is None else min(lo, s)
            hi = e if hi is None else max(hi, e)
        if lo is None:  # between pieces (whitespace): the nearest source position
            j = bisect.bisect_right(self._starts, start) - 1
            at = self.pieces[j].src_end if j >= 0 else 0
            return at, at
        return lo, max(lo, hi)

    def then(self, after: SourceMap) -> SourceMap:
        """This map followed by ``after`` (a map of a later rewrite of this one's output)."""
        return Chain(self, after)


UNCONFIRMED = 3
"""Extra cost of a match whose next tokens differ (a lone "the" inside a rewrite)."""
SYMBOL = 3
"""Extra cost of a match on a symbol ("," "." "-"), weaker evidence than a word."""


def _align(a: list[str], b: list[str],
           window: int = 48) -> list[tuple[str, int, int, int, int]]:
    """Opcodes (as ``difflib``'s) taking ``a`` to ``b``, in one left-to-right pass: tokens equal
    in turn match; after a mismatch, the next match is the pair nearest ahead (fewest tokens
    skipped on both sides, within ``window``; a pair whose next tokens differ counts
    ``UNCONFIRMED`` more, one on a symbol ``SYMBOL`` more).
    Linear in the text: a rewrite changes a few tokens here and there, and repeated words make
    a full LCS (``SequenceMatcher``) take seconds on a long text."""
    where: dict[str, list[int]] = {}
    for n, token in enumerate(b):
        where.setdefault(token, []).append(n)
    ops: list[tuple[str, int, int, int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            ops.append(("equal", i, i + 1, j, j + 1))
            i, j = i + 1, j + 1
            continue
        best: tuple[int, int, int] | None = None  # (cost, i, j) of the next match
        for x in range(min(window, len(a) - i)):
            if best is not None and x >= best[0]:
                break
            found = where.get(a[i + x], ())
            at = bisect.bisect_left(found, j)
            while at < len(found) and found[at] - j < window:
                y = found[at]
                at += 1
                if best is not None and x + y - j >= best[0]:
                    break
                ends = (i + x + 1 == len(a), y + 1 == len(b))
                alone = ends != (True, True) and (any(ends) or a[i + x + 1] != b[y + 1])
                cost = x + y - j + (UNCONFIRMED if alone else 0) + (
                    0 if a[i + x][0].isalnum() else SYMBOL)
                if best is None or cost < best[0]:
                    best = (cost, i + x, y)
        if best is None:
            break
        _, k, n = best
        ops.append(("replace", i, k, j, n))
        i, j = k, n
    if i < len(a) or j < len(b):
        ops.append(("replace", i, len(a), j, len(b)))
    return ops


class Chain:
    """Maps composed: ``last`` maps the final text into the output of ``first``."""

    def __init__(self, first: SourceMap, last: SourceMap) -> None:
        self.first, self.last = first, last

    def source(self, start: int, end: int) -> tuple[int, int]:
        return self.first.source(*self.last.source(start, end))

    def then(self, after: SourceMap) -> SourceMap:
        return Chain(self, after)


@dataclass(slots=True)
class Rewrite:
    """One recorded text-rewriting step of a request (``record``): its input, output and, when
    the stage knows it, its exact map."""

    before: str
    after: str
    map: TextMap | None = None


class Rewrites(list[Rewrite]):
    """The rewrites a request's text went through, in order; a ``job.state`` value."""


def record(state: dict, before: str, after: str, exact: TextMap | None = None) -> None:
    """Notes in a job's ``state`` that a stage rewrote ``before`` into ``after`` (with its
    exact map, if it has one), so word times can point into the original text."""
    if before != after or exact is not None:
        state.setdefault(Rewrites, Rewrites()).append(Rewrite(before, after, exact))


def original_map(text: str, final: str, rewrites: list[Rewrite] = ()) -> SourceMap:
    """Maps ``final`` (the text the chunker cut) back to ``text`` (the client's), through the
    recorded ``rewrites``; whatever happened between them unrecorded is worked out by
    ``between``."""
    current, chain = text, None

    def add(m: SourceMap) -> None:
        nonlocal chain
        chain = m if chain is None else Chain(chain, m)

    for step in rewrites:
        if step.before != current:
            add(TextMap.between(current, step.before))
        add(step.map or TextMap.between(step.before, step.after))
        current = step.after
    if current != final or chain is None:
        add(TextMap.between(current, final))
    assert chain is not None
    return chain
