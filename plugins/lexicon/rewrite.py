"""Applies several matchers to one text in one pass, earlier matchers first; the edits and
their map back to the original text."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from veena.platform.textmap import TextMap
from veena.plugins.lexicon.matcher import Matcher

Edit = tuple[int, int, str]
"""``(start, end, spoken)``: ``text[start:end]`` (original offsets) is replaced by ``spoken``."""


@dataclass(frozen=True, slots=True)
class Layer:
    """A matcher and the one language whose sentences it applies to (None: every sentence)."""

    matcher: Matcher
    language: str | None = None


def find_edits(text: str, layers: Sequence[Layer],
               language_at: Callable[[int], str] | None = None) -> list[Edit]:
    """The non-overlapping replacements, in text order. Where two layers' words overlap, the
    earlier layer wins; ``language_at(offset)`` gives the language of the sentence there (only
    asked for layers bound to a language)."""
    edits: list[Edit] = []
    starts: list[int] = []
    for layer in layers:
        if not layer.matcher:
            continue
        first = not edits
        for s, e, spoken in layer.matcher.finditer(text):
            if layer.language is not None and (language_at is None
                                               or language_at(s) != layer.language):
                continue
            if first:
                edits.append((s, e, spoken))
                continue
            i = bisect.bisect_left(starts, s)
            if i < len(starts) and starts[i] < e or i > 0 and edits[i - 1][1] > s:
                continue  # overlaps a word an earlier layer replaced
            edits.insert(i, (s, e, spoken))
            starts.insert(i, s)
        if first:
            starts = [s for s, _, _ in edits]
    return edits


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """``text`` with each edit made (edits in order, not overlapping)."""
    out, at = [], 0
    for s, e, spoken in edits:
        out.append(text[at:s])
        out.append(spoken)
        at = e
    out.append(text[at:])
    return "".join(out)


class EditMap(TextMap):
    """``TextMap.from_edits(src, edits)``, built the first time it is used: only requests that
    want word times read it, and building it costs about as much as finding the words."""

    def __init__(self, src: str, edits: list[Edit]) -> None:  # the TextMap: ``_map()``
        self._src, self._edits = src, edits
        self._built: TextMap | None = None

    def _map(self) -> TextMap:
        if self._built is None:
            self._built = TextMap.from_edits(self._src, self._edits)
        return self._built

    def source(self, start: int, end: int) -> tuple[int, int]:
        return self._map().source(start, end)

    def __getattr__(self, name: str):  # pieces, src_len, out_len ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._map(), name)
