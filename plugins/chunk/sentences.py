"""Sentence chunking for English, Hindi and Telugu.

1. Sentence ends: ``.`` ``?`` ``!`` ellipses, ``।`` ``॥`` and line breaks, with any closing quotes
   and brackets after them. A period after an abbreviation (Dr., e.g., डॉ.) or an initial
   (A. P. J.) is no end, and neither is an ellipsis or a quoted ``?``/``!`` followed by a
   lower-case word ("Wait... what", "Really?" she asked).
2. A sentence that is only emotion tags joins the next sentence (or the last one at the end),
   so a tag stays with the words it colours.
3. A sentence longer than ``max_chars`` is cut at the last clause mark (, ; : – —) that fits,
   else at the last space that is not right after a tag, else (one huge token) at the last
   grapheme cluster boundary before ``max_chars`` (``graphemes.py``: never inside क्ष or త్ర).
   Nothing without a space inside (numbers, URLs, tags) is ever cut unless it alone is too long.
4. A piece shorter than ``min_chars`` merges with its neighbour while the result fits.
Text of at most ``short_chars`` characters stays one chunk.
"""

from __future__ import annotations

import re

from veena.plugins.chunk.graphemes import grapheme_cut

from veena.plugins.normalize.abbreviations import NO_BREAK

_END = re.compile(r"(?:\.{2,}|…+|[.?!]+)[\"'”’»)\]}]*(?=\s|$)|[।॥]+[\"'”’»)\]}]*|\n")
_LEADING = "\"'“‘«([{"
_CLOSERS = "\"'”’»)]}"
_TAG = re.compile(r"<[^<>\s]{1,40}>")
_TAG_ONLY = re.compile(r"(?:\s*<[^<>\s]{1,40}>)+\s*[.?!।॥…]*")
_CLAUSE = re.compile(r"[,;:–—،](?=\s)|\s[-–—](?=\s)")
_LOWER_NEXT = re.compile(r"\s+[a-z]")


def _is_end(text: str, m: re.Match[str]) -> bool:
    mark = m.group()
    if mark == "\n" or mark[0] in "।॥":
        return True
    if (mark[0] == "…" or mark.startswith("..") or mark[-1] in _CLOSERS) \
            and _LOWER_NEXT.match(text, m.end()):
        return False  # "Wait... what", "Really?" she asked
    if mark[0] == "." and not mark.startswith(".."):
        start = text.rfind(" ", 0, m.start()) + 1
        word = text[start:m.start()].lstrip(_LEADING)
        if word in NO_BREAK or len(word) == 1 and word.isalpha():
            return False
    return True


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, tags joined to the sentence they belong to."""
    sentences: list[str] = []
    pos = 0
    for m in _END.finditer(text):
        if _is_end(text, m):
            piece = text[pos:m.end()].strip()
            if piece:
                sentences.append(piece)
            pos = m.end()
    tail = text[pos:].strip()
    if tail:
        sentences.append(tail)
    return _attach_tags(sentences)


def _attach_tags(sentences: list[str]) -> list[str]:
    out: list[str] = []
    pending = ""
    for s in sentences:
        if _TAG_ONLY.fullmatch(s):
            pending = f"{pending} {s}" if pending else s
            continue
        out.append(f"{pending} {s}" if pending else s)
        pending = ""
    if pending:
        if out:
            out[-1] = f"{out[-1]} {pending}"
        else:
            out.append(pending)
    return out


def _cut_point(s: str, max_chars: int) -> int:
    window = s[: max_chars + 1]
    tags = [m.span() for m in _TAG.finditer(window)]
    floor = max_chars // 3
    clause = None
    for m in _CLAUSE.finditer(window, floor):
        clause = m.end()
    if clause is not None:
        return clause
    cut = window.rfind(" ")
    while cut > 0:
        before = window.rfind(" ", 0, cut) + 1
        if not _TAG.fullmatch(window, before, cut) and not any(a < cut < b for a, b in tags):
            return cut
        cut = window.rfind(" ", 0, cut)
    return grapheme_cut(s, max_chars)


def split_long(sentence: str, max_chars: int) -> list[str]:
    pieces = []
    s = sentence
    while len(s) > max_chars:
        cut = _cut_point(s, max_chars)
        head, s = s[:cut].strip(), s[cut:].strip()
        if head:
            pieces.append(head)
    if s:
        pieces.append(s)
    return pieces


def merge_small(pieces: list[str], min_chars: int, max_chars: int) -> list[str]:
    out: list[str] = []
    for p in pieces:
        if out and (len(out[-1]) < min_chars or len(p) < min_chars) \
                and len(out[-1]) + 1 + len(p) <= max_chars:
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return out


def chunk(text: str, max_chars: int = 300, min_chars: int = 20,
          short_chars: int = 80) -> list[str]:
    """Chunks of ``text`` for a voice to speak in order (never empty; ``[text]`` if blank)."""
    flat = " ".join(text.split())
    if len(flat) <= short_chars and len(flat) <= max_chars:
        return [flat or text]
    pieces: list[str] = []
    for sentence in split_sentences(text):
        pieces.extend(split_long(" ".join(sentence.split()), max_chars))
    return merge_small(pieces, min_chars, max_chars) or [flat or text]
