"""Numbers that are not quantities: dotted sequences (versions 2.0.1, v3.10.2, IP addresses
192.168.1.1) read part by part, and Roman numerals after a heading word (Chapter XII, भाग III,
World War II) or a name (Elizabeth II -> Elizabeth the Second)."""

from __future__ import annotations

import re
import unicodedata

from veena.plugins.normalize import numbers
from veena.plugins.normalize.numerals import NOT_ADDRESS
from veena.plugins.normalize.rules import Context, Rule, group

DOT = {"en": "dot", "hi": "डॉट", "te": "డాట్"}
VERSION = {"en": "version", "hi": "वर्ज़न", "te": "వెర్షన్"}
VERSION = {k: unicodedata.normalize("NFC", v) for k, v in VERSION.items()}


def _part(p: str, lang: str) -> str:
    """A part of a dotted sequence: a number up to three digits, else (or with a leading zero)
    its digits."""
    if len(p) > 3 or len(p) > 1 and p[0] == "0":
        return numbers.digits(p, lang)
    return numbers.cardinal(int(p), lang)


def _dotted(m: re.Match[str], ctx: Context, last: int) -> str | tuple[str, int]:
    """Anchored at the first digit; a ``v`` just before it (v2.0.1) is read as "version"."""
    words = f" {DOT[ctx.lang]} ".join(_part(p, ctx.lang) for p in m.group().split("."))
    s = m.start()
    if s > last and m.string[s - 1] in "vV" and (s < 2 or not m.string[s - 2].isalnum()):
        return f"{VERSION[ctx.lang]} {words}", s - 1
    return words


DOTTED = Rule(
    "dot",
    rf"(?:(?<=[vV])|(?<![\w.,\-]))\d+(?:\.\d+){{2,}}(?![\d]|\.\d){NOT_ADDRESS}",
    _dotted, back=True, guard=r"\d+\.\d+\.\d", first="0-9")


# --- Roman numerals --------------------------------------------------------------------------

_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50}
_CANONICAL = re.compile(r"(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
CUES = frozenset(unicodedata.normalize("NFC", w) for w in """
chapter part section volume book act scene phase stage round level class grade appendix article
schedule war lesson canto psalm episode season title clause annexure unit standard std form
भाग अध्याय खंड कक्षा अनुच्छेद पाठ चरण सत्र अनुसूची सर्ग
భాగం అధ్యాయం తరగతి పాఠం దశ అంకం ప్రకరణం సర్గ
""".split())
"""Words after which a Roman numeral is a plain number (Chapter XII -> Chapter twelve)."""


def roman_value(s: str) -> int | None:
    """The value of a canonically written numeral of I V X L (1..89), else None."""
    if not s or not _CANONICAL.fullmatch(s):
        return None
    total = 0
    for a, b in zip(s, s[1:] + " "):
        v = _VALUES[a]
        total += -v if b != " " and _VALUES[b] > v else v
    return total


REGNAL_NAMES = frozenset("""
Elizabeth Henry Louis George Edward Charles William James Richard John Paul Pius Leo Benedict
Gregory Innocent Clement Alexander Nicholas Peter Frederick Philip Ferdinand Napoleon Mary
Catherine Constantine Otto Gustav Olav Harald Haakon Christian Frederik Juan Carlos Felipe
Alfonso Umberto Victor Emmanuel Wilhelm Ludwig Rudolf Ivan Selim Mehmed Murad Suleiman Ptolemy
Ramesses Amenhotep Thutmose Rama Boris Jigme Mohammed Abdullah Hussein Francis Urban Sixtus
Stephen Malcolm David Robert Anne Isabella Margaret Christina Sancho Pedro Manuel Joseph Leopold
Karl Franz Friedrich Mswati Sobhuza Akihito Baldwin Godfrey Albert Rainier Alexios Basil
""".split())
"""Names after which II, XIV ... are regnal ordinals (a list, so that "Rocky III", a film,
and "Hello XII" stay as they are)."""
_WORD_BEFORE = re.compile(r"([^\W\d_][\w\u0900-\u0DFF]*)[^\w\u0900-\u0DFF]*$")


def _word_before(m: re.Match[str]) -> str:
    """The last word before the match, past any punctuation, symbols or tags between (so that
    the answer is the same before and after those are rewritten)."""
    found = _WORD_BEFORE.search(m.string, max(0, m.start() - 40), m.start())
    return found.group(1) if found else ""


def _roman(m: re.Match[str], ctx: Context) -> str | None:
    raw = group(m, "rom", "n")
    n = roman_value(raw)
    if n is None:
        return None
    word = _word_before(m)
    if word.lower() in CUES:
        return numbers.cardinal(n, ctx.lang)
    if ctx.lang == "en" and len(raw) >= 2 and n <= 39 and word in REGNAL_NAMES:
        return f"the {numbers.ordinal(n, 'en').capitalize()}"  # Elizabeth the Second
    return None


ROMAN = Rule("rom", r"(?<![\w\u0900-\u0DFF.'’-])(?P<rom_n>[IVXL]{1,7})(?![\w'’-]|\.\w)",
             _roman, guard=r"[IVXL]+(?![\w'’-])")
