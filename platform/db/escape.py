"""Reversible escaping for text a backend cannot hold (PostgreSQL's ``text`` and ``jsonb``
refuse U+0000).

Only text that contains NUL or the escape character itself changes; everything else is stored
as sent. ``ESC`` is U+2400 (SYMBOL FOR NULL, "␀"): NUL is stored as ``␀0`` and a literal ``␀``
as ``␀␀``. ``unescape(escape(s)) == s`` for every string; a row written before this scheme
that holds a bare ``␀`` reads back unchanged (an ``␀`` followed by anything else is kept).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

ESC = "\u2400"
_NUL = "\x00"
S = TypeVar("S", bound=msgspec.Struct)


def escape(text: str) -> str:
    """``text`` with NUL and ``ESC`` escaped (identity for text without either)."""
    if _NUL not in text and ESC not in text:
        return text
    return text.replace(ESC, ESC + ESC).replace(_NUL, ESC + "0")


def unescape(text: str) -> str:
    """The inverse of :func:`escape`."""
    if ESC not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == ESC and i + 1 < n and text[i + 1] in (ESC, "0"):
            out.append(ESC if text[i + 1] == ESC else _NUL)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def escape_row(row: S) -> S:
    """A copy of ``row`` with every ``str`` field escaped (the same object when none changes)."""
    changes = {f: escape(v) for f in row.__struct_fields__
               if isinstance(v := getattr(row, f), str) and (_NUL in v or ESC in v)}
    return msgspec.structs.replace(row, **changes) if changes else row


def unescape_row(row: S) -> S:
    """The inverse of :func:`escape_row`."""
    changes = {f: unescape(v) for f in row.__struct_fields__
               if isinstance(v := getattr(row, f), str) and ESC in v}
    return msgspec.structs.replace(row, **changes) if changes else row
