"""Extended grapheme cluster boundaries (Unicode UAX #29), enough to never cut a user-perceived
character in two: combining marks and spacing vowel signs (GB9, GB9a), CR LF (GB3), emoji ZWJ
sequences and modifiers (GB11), flag pairs (GB12/13) and the Indic conjunct rule of Unicode
15.1 (GB9c: consonant + virama + consonant, as in क्ष, త్ర, with ZWJ/ZWNJ or nuktas between).

Written on ``unicodedata`` (no dependency); used only when one token is longer than a chunk.
"""

from __future__ import annotations

import unicodedata

_LINKERS = frozenset("\u094d\u09cd\u0acd\u0b4d\u0c4d\u0d4d")
"""The Indic_Conjunct_Break=Linker viramas (Devanagari, Bengali, Gujarati, Oriya, Telugu,
Malayalam)."""
_LINKER_BLOCKS = ((0x0900, 0x097F), (0x0980, 0x09FF), (0x0A80, 0x0AFF), (0x0B00, 0x0B7F),
                  (0x0C00, 0x0C7F), (0x0D00, 0x0D7F))
_JOINERS = "\u200c\u200d"


def _is_extend(ch: str) -> bool:
    o = ord(ch)
    return (unicodedata.category(ch) in ("Mn", "Me", "Mc") or ch in _JOINERS
            or 0xFE00 <= o <= 0xFE0F or 0x1F3FB <= o <= 0x1F3FF or 0xE0020 <= o <= 0xE007F
            or 0xE0100 <= o <= 0xE01EF)


def _is_consonant(ch: str) -> bool:
    o = ord(ch)
    return (unicodedata.category(ch) == "Lo" and any(a <= o <= b for a, b in _LINKER_BLOCKS)
            and "VOWEL" not in unicodedata.name(ch, "VOWEL"))


def _is_pictographic(ch: str) -> bool:
    o = ord(ch)
    return (0x1F000 <= o <= 0x1FAFF and not 0x1F1E6 <= o <= 0x1F1FF or 0x2600 <= o <= 0x27BF
            or 0x2B00 <= o <= 0x2BFF)


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def is_boundary(s: str, i: int) -> bool:
    """Whether a cut between ``s[i - 1]`` and ``s[i]`` separates two grapheme clusters."""
    if i <= 0 or i >= len(s):
        return True
    prev, cur = s[i - 1], s[i]
    if prev == "\r" and cur == "\n":
        return False
    if prev in "\r\n" or cur in "\r\n":  # GB4, GB5: around controls
        return True
    if _is_extend(cur):
        return False
    if prev == "\u200d" and _is_pictographic(cur):
        return False
    if _is_regional(cur) and _is_regional(prev):
        j = i - 1
        while j >= 0 and _is_regional(s[j]):
            j -= 1
        return (i - 1 - j) % 2 == 0
    if _is_consonant(cur):  # GB9c: consonant, then a linker among non-spacing marks and ZWJ
        j, linked = i - 1, False
        while j >= 0 and (unicodedata.category(s[j]) in ("Mn", "Me") or s[j] == "\u200d"):
            linked = linked or s[j] in _LINKERS
            j -= 1
        if linked and j >= 0 and _is_consonant(s[j]):
            return False
    return True


def grapheme_cut(s: str, limit: int) -> int:
    """The last cluster boundary at or before ``limit``; when the first cluster alone is longer,
    the end of that cluster (never 0 for a non-empty ``s``)."""
    if limit >= len(s):
        return len(s)
    cut = max(limit, 1)
    while cut > 0 and not is_boundary(s, cut):
        cut -= 1
    if cut == 0:
        cut = max(limit, 1)
        while cut < len(s) and not is_boundary(s, cut):
            cut += 1
    return cut
